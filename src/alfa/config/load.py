"""Typed run configuration: frozen dataclasses, YAML files and dotted ``key=value`` overrides.

The dataclasses of :mod:`alfa.config.schema` are the single schema (re-exported here). A YAML
file overrides their defaults and ``key=value`` pairs (``train.iterations=2000 seed=3``)
override the YAML; every key and value is checked against the field types, so a typo or an
impossible value fails before any work starts with a :class:`~alfa.errors.ConfigError` that
names the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from alfa.config.bounds import (
    JITTER_BOUNDS,
    MAX_INT,
    MAX_WIDTH,
    check_counts,
    short,
    yaml_depth_check,
)
from alfa.errors import ConfigError
from alfa.limits import MAX_IMAGE_SIDE, read_text

__all__ = [
    "Config",
    "DataConfig",
    "EvalConfig",
    "MetaConfig",
    "ModelConfig",
    "RuleConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "generator_name",
    "leaf_keys",
    "load_config",
    "parse_overrides",
]


from alfa.config.schema import (
    DEFAULT_GENERATOR,
    GENERATOR_PRESETS,
    Config,
    DataConfig,
    EvalConfig,
    MetaConfig,
    ModelConfig,
    RuleConfig,
    TrainConfig,
)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the type ``hint`` and return it in canonical form."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        for choice in choices:
            # Canonical form: the choice itself (so 2.0 reads as 2); a bool never matches a number.
            if value == choice and isinstance(value, bool) == isinstance(choice, bool):
                return choice
            if isinstance(value, str) and not isinstance(choice, str) and value == str(choice):
                return choice
        raise ConfigError(
            f"config key '{key}' must be one of {', '.join(map(repr, choices))}; got {value!r}"
        )
    if origin is tuple:
        (item_hint, _) = typing.get_args(hint)
        if value is None:
            value = []
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()] if value.strip() else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list; got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", v, item_hint) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"config key '{key}': unsupported type")  # pragma: no cover
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config key '{key}' must be true or false; got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be an integer; got {value!r}")
        number: int | None = None
        if isinstance(value, int):
            number = value
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):  # and over 4300 digits
                number = int(value.strip())
        elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
            number = int(value)
        if number is None:
            raise ConfigError(f"config key '{key}' must be an integer; got {short(value)}")
        if not -MAX_INT <= number <= MAX_INT:
            raise ConfigError(
                f"config key '{key}' must be an integer of at most {MAX_INT}; got {short(value)}"
            )
        return number
    if hint is float:
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None:
            raise ConfigError(f"config key '{key}' must be a number; got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"config key '{key}' must be a finite number; got {value!r}")
        return number
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key '{key}' must be a string; got {short(value)}")
        text = "" if value is None else str(value)
        if "\0" in text:
            raise ConfigError(f"config key '{key}' may not hold a NUL character (\\0)")
        return text
    raise ConfigError(f"config key '{key}': unsupported type {hint!r}")  # pragma: no cover


def _unknown(key: str, known: list[str]) -> ConfigError:
    """An unknown-key error with the closest known key as a suggestion, if any is close."""
    parts = key.split(".")
    leaves = {k.rsplit(".", 1)[-1]: k for k in reversed(list(_leaf_hints()))}
    suggestion = leaves.get(parts[-1])  # e.g. 'iterations' for 'train.iterations'
    if suggestion is None:
        close = difflib.get_close_matches(parts[-1], known, n=1)
        suggestion = ".".join([*parts[:-1], close[0]]) if close else None
    if suggestion is None:
        match = difflib.get_close_matches(parts[-1], list(leaves), n=1)
        suggestion = leaves[match[0]] if match else None
    hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
    return ConfigError(f"unknown config key '{key}'{hint}")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<root>'}' must be a mapping")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown(prefix + str(key), names)
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, {} if value is None else value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(prefix + key, value, hint)
    return cls(**kwargs)


def _with_generator_preset(data: dict[str, Any], *, default: bool = False) -> dict[str, Any]:
    """``data`` with the switches that its ``rule.generator`` names filled in where ``data``
    does not set them itself (:data:`~alfa.config.schema.GENERATOR_PRESETS`); with ``default``,
    an ALFA rule that names no preset gets :data:`~alfa.config.schema.DEFAULT_GENERATOR`'s."""
    rule = data.get("rule")
    if not isinstance(rule, dict):
        return data
    name = rule.get("generator")
    if name is None and default and rule.get("name") == "alfa":
        name = DEFAULT_GENERATOR
    if not isinstance(name, str):
        return data
    preset = GENERATOR_PRESETS.get(name, {})  # custom, or unknown: its check says
    filled = {k: list(v) if isinstance(v, tuple) else v for k, v in preset.items()}
    return {**data, "rule": {**filled, **rule}}


def generator_name(rule: RuleConfig) -> str:
    """The preset whose switches ``rule`` has, or ``custom`` for another mix."""
    for name, preset in GENERATOR_PRESETS.items():
        if all(getattr(rule, key) == value for key, value in preset.items()):
            return name
    return "custom"


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from nested plain data.

    ``rule.generator`` (for an ALFA rule that names none,
    :data:`~alfa.config.schema.DEFAULT_GENERATOR`) sets the generator switches the data does not
    set itself, and is then recorded as what the switches are: the preset they match, or
    ``custom``.
    """
    config = _build(Config, _with_generator_preset(data or {}, default=True), "")
    name = generator_name(config.rule)
    if name != config.rule.generator:
        config = config.replace(rule=dataclasses.replace(config.rule, generator=name))
    validate(config)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested data (tuples as lists) that :func:`config_from_dict` reads back."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def leaf_keys(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{dotted key: value}`` of every leaf of a nested config dict."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(leaf_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _leaf_hints(cls: type = Config, prefix: str = "") -> dict[str, Any]:
    """The type hint of every dotted leaf key."""
    out: dict[str, Any] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(_leaf_hints(hint, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = hint
    return out


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["train.iterations=2000", "seed=3"]`` into nested data.

    Values are parsed as YAML (``[40,40]`` is a list, ``true`` a bool), except for keys that hold
    free text (``name``, ``data.root``, ...), which keep the text as typed, so ``name=0123`` stays
    ``"0123"`` instead of YAML's octal 83.
    """
    nested: dict[str, Any] = {}
    text_keys = {k for k, hint in _leaf_hints().items() if hint is str}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override '{pair}' is not of the form key=value")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override '{pair}' has an empty key")
        if key in text_keys:
            value: Any = raw.strip()
        else:
            yaml_depth_check(raw, f"the value of override '{key}'")
            try:
                value = yaml.safe_load(raw) if raw.strip() else ""
            except (yaml.YAMLError, ValueError):  # ValueError: an integer of 4300+ digits
                value = raw
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{pair}' conflicts with another override")
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class _DuplicateKey(Exception):
    """A mapping of a YAML file holds the same key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last one
    silently, so an edit lower in the file would hide one above it)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise _DuplicateKey(
                    f"key '{key}' appears twice in one mapping (lines {seen[key]} and {line}); "
                    "remove one"
                )
            if isinstance(key, str | int | float | bool):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a directory, not a YAML file")
    if not path.exists():  # a pipe (<(...)) or a device is read as a file is
        raise ConfigError(f"config file '{path}' does not exist")
    text = read_text(path, what="config file", error=ConfigError)  # within MAX_TEXT_BYTES
    yaml_depth_check(text, f"config file '{path}'")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: builds plain data only
    except _DuplicateKey as exc:
        raise ConfigError(f"config file '{path}': {exc}") from exc
    except ValueError as exc:  # an integer of more than 4300 digits
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config file '{path}' holds a value YAML cannot read: {first}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file '{path}' is not valid YAML{line}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of keys to values")
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply dotted overrides."""
    data = _with_generator_preset(read_yaml(path) if path is not None else {})
    # a preset named on the command line beats the file's switches, not the line's own ones
    data = _merge(data, _with_generator_preset(parse_overrides(overrides or [])))
    return config_from_dict(data)


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"config key '{key}' {message}")


def validate(config: Config) -> None:
    """Reject impossible values and combinations, naming the key."""
    d, m, r, t, e = config.data, config.meta, config.rule, config.train, config.eval
    _require(
        not any(c in config.name for c in "/\\") and config.name not in (".", ".."),
        "name",
        f"is used as a folder name and may not hold '/' or '\\'; got {config.name!r}",
    )
    _require(
        len(config.name.encode()) <= 200,
        "name",
        f"is used as a folder name and may have at most 200 bytes; got {len(config.name.encode())}",
    )
    for key, seed in (("seed", config.seed), ("eval.seed", e.seed)):
        _require(0 <= seed < 2**63, key, f"must be between 0 and 2**63 - 1; got {seed}")
    _require(d.name in DATASETS, "data.name", f"must be one of {', '.join(DATASETS)}")
    _require(d.shots >= 1, "data.shots", f"must be at least 1; got {d.shots}")
    _require(d.query >= 0, "data.query", f"must be 0 or more; got {d.query}")
    _require(d.eval_query >= 1, "data.eval_query", f"must be at least 1; got {d.eval_query}")
    if d.name != "sinusoid":
        _require(d.ways >= 2, "data.ways", f"must be at least 2; got {d.ways}")
        _require(
            d.query >= 1, "data.query", f"must be at least 1 for classification; got {d.query}"
        )
        _require(d.image_size >= 8, "data.image_size", f"must be at least 8; got {d.image_size}")
        _require(
            d.image_size <= MAX_IMAGE_SIDE,
            "data.image_size",
            f"must be at most {MAX_IMAGE_SIDE}; got {d.image_size}",
        )
        _require(bool(d.root), "data.root", "must name the dataset folder for image data")
        _require(
            config.model.name != "mlp",
            "model.name",
            "must be conv4, resnet12 or resnet18 for images",
        )
        _require(
            d.train_classes == "split" or not d.split_file,
            "data.train_classes",
            "is all (every class), so data.split_file (a list of training classes) must be empty",
        )
        for part, top in JITTER_BOUNDS.items():
            value = getattr(d, f"jitter_{part}")
            _require(
                math.isfinite(value) and 0 <= value <= top,
                f"data.jitter_{part}",
                f"must be between 0 and {top}; got {value}",
            )
        _require(d.test_query >= 0, "data.test_query", f"must be 0 or more; got {d.test_query}")
        _require(
            d.test_name in ("", *DATASETS[1:-1]),  # not metadataset
            "data.test_name",
            f"must be empty or one of {', '.join(DATASETS[1:-1])}; got {d.test_name!r}",
        )
        _require(
            not d.test_name or bool(d.test_root),
            "data.test_root",
            f"must name the folder of the test dataset '{d.test_name}'",
        )
    else:
        _require(config.model.name == "mlp", "model.name", "must be mlp for sinusoid regression")
    for part in JITTER_BOUNDS:
        _require(
            not getattr(d, f"jitter_{part}") or d.name not in ("sinusoid", "metadataset"),
            f"data.jitter_{part}",
            f"jitters images of an episodic image dataset; {d.name} has none to jitter",
        )
    _require(config.model.name in MODELS, "model.name", f"must be one of {', '.join(MODELS)}")
    _require(all(h >= 1 for h in config.model.hidden), "model.hidden", "widths must be >= 1")
    _require(
        all(h <= MAX_WIDTH for h in config.model.hidden),
        "model.hidden",
        f"widths must be at most {MAX_WIDTH}; got {short(list(config.model.hidden))}",
    )
    _require(config.model.filters >= 1, "model.filters", "must be at least 1")
    _require(
        config.model.filters <= MAX_WIDTH,
        "model.filters",
        f"must be at most {MAX_WIDTH}; got {config.model.filters}",
    )
    check_counts(config)
    _require(m.steps >= 1, "meta.steps", f"must be at least 1; got {m.steps}")
    _require(m.batch_size >= 1, "meta.batch_size", f"must be at least 1; got {m.batch_size}")
    _require(m.lr > 0, "meta.lr", f"must be positive; got {m.lr}")
    _require(m.multi_step_epochs >= 1, "meta.multi_step_epochs", "must be at least 1")
    _require(m.epoch_iterations >= 1, "meta.epoch_iterations", "must be at least 1")
    _require(m.grad_clip >= 0, "meta.grad_clip", f"must be 0 (off) or positive; got {m.grad_clip}")
    _require(
        m.head_init == "learned" or config.model.name != "mlp",
        "meta.head_init",
        f"{m.head_init} needs a feature extractor and a linear head (conv4, resnet12, resnet18)",
    )
    _require(r.lr > 0, "rule.lr", f"must be positive; got {r.lr}")
    _require(r.weight_decay >= 0, "rule.weight_decay", f"must be 0 or more; got {r.weight_decay}")
    bad = [g for g in r.generate if g not in ("alpha", "beta")]
    _require(not bad, "rule.generate", f"may only hold alpha and beta; got {bad}")
    _require(len(r.clip) in (0, 2), "rule.clip", "must be [] or [low, high]")
    if len(r.clip) == 2:
        _require(r.clip[0] < r.clip[1], "rule.clip", f"low must be below high; got {list(r.clip)}")
    if r.clip:
        _require(
            r.name == "alfa" and bool(r.generate),
            "rule.clip",
            "bounds generated multipliers, so it needs rule.name=alfa with rule.generate set",
        )
    _require(
        tuple(r.state_statistics) in (("mean",), ("mean", "rms")),
        "rule.state_statistics",
        f"must be [mean] or [mean, rms]; got {list(r.state_statistics)}",
    )
    _require(
        r.generator != "stable" or (r.name == "alfa" and bool(r.generate)),
        "rule.generator",
        "is stable, a preset of ALFA's generator, so it needs rule.name=alfa with "
        "rule.generate set",
    )
    switches = {
        "state_encoding": r.state_encoding != "raw",
        "generator_output": r.generator_output != "linear",
        "state_statistics": tuple(r.state_statistics) != ("mean",),
    }
    for key, changed in switches.items():
        if changed:
            _require(
                r.name == "alfa" and bool(r.generate),
                f"rule.{key}",
                "changes ALFA's generator, so it needs rule.name=alfa with rule.generate set",
            )
    _require(
        not r.per_element_decay or r.name != "maml",
        "rule.per_element_decay",
        "needs a learned rule (rule.name=alfa or learned_fixed), not maml",
    )
    if m.init == "random":
        _require(
            r.name != "maml",
            "meta.init",
            "is random, which needs a learned rule (rule.name=alfa or learned_fixed), not maml",
        )
    _require(d.workers >= -1, "data.workers", f"must be -1 (automatic), 0 or more; got {d.workers}")
    _require(t.iterations >= 1, "train.iterations", f"must be at least 1; got {t.iterations}")
    _require(t.log_every >= 1, "train.log_every", f"must be at least 1; got {t.log_every}")
    _require(t.val_every >= 0, "train.val_every", f"must be 0 (off) or more; got {t.val_every}")
    _require(t.val_tasks >= 1, "train.val_tasks", f"must be at least 1; got {t.val_tasks}")
    _require(t.checkpoint_every >= 1, "train.checkpoint_every", "must be at least 1")
    _require(t.keep_last >= 1, "train.keep_last", f"must be at least 1; got {t.keep_last}")
    _require(t.keep_best >= 1, "train.keep_best", f"must be at least 1; got {t.keep_best}")
    _require(t.threads >= 0, "train.threads", f"must be 0 or more; got {t.threads}")
    _require(t.threads <= 1024, "train.threads", f"must be at most 1024; got {t.threads}")
    _require(t.task_group >= 0, "train.task_group", f"must be 0 (auto) or more; got {t.task_group}")
    _require(t.device in ("auto", "cpu", "cuda"), "train.device", "must be auto, cpu or cuda")
    _require(e.tasks >= 1, "eval.tasks", f"must be at least 1; got {e.tasks}")
    _require(e.steps >= 0, "eval.steps", f"must be 0 (as trained) or more; got {e.steps}")
    _require(e.batch >= 1, "eval.batch", f"must be at least 1; got {e.batch}")


DATASETS = (
    "sinusoid",
    "omniglot",
    "mini_imagenet",
    "tiered_imagenet",
    "cub",
    "folder",
    "metadataset",
)
MODELS = ("mlp", "conv4", "resnet12", "resnet18")
