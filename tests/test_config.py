"""Config parsing: types, values, combinations, YAML files, and round trips (property-based)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alfa.config import (
    DATASETS,
    Config,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_overrides,
    read_yaml,
)
from alfa.errors import ConfigError
from alfa.runs.build import build_learner

# --- plain cases -------------------------------------------------------------------------------


def test_defaults_are_sinusoid_mlp_maml():
    config = load_config(None)
    assert config == Config()
    assert (config.data.name, config.model.hidden, config.rule.name) == (
        "sinusoid",
        (40, 40),
        "maml",
    )


def test_overrides_beat_the_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\ntrain:\n  iterations: 7\n  log_every: 2\n")
    config = load_config(path, ["train.iterations=9", "model.hidden=[8,8]"])
    assert (config.seed, config.train.iterations, config.train.log_every) == (3, 9, 2)
    assert config.model.hidden == (8, 8)


@pytest.mark.parametrize(
    "override, key, words",
    [
        ("meta.steps=abc", "meta.steps", "integer"),
        ("train.iterations=1.5", "train.iterations", "integer"),
        ("data.shots=0", "data.shots", "at least 1"),
        ("meta.steps=-1", "meta.steps", "at least 1"),
        ("meta.batch_size=0", "meta.batch_size", "at least 1"),
        ("meta.lr=0", "meta.lr", "positive"),
        ("rule.lr=inf", "rule.lr", "finite"),
        ("rule.lr=nan", "rule.lr", "finite"),
        ("rule.name=sgd", "rule.name", "one of"),
        ("meta.first_order=maybe", "meta.first_order", "true or false"),
        ("model.hidden=[8,x]", "model.hidden[1]", "integer"),
        ("meta.init=random", "meta.init", "maml"),
        ("rule.clip=[0.5,2]", "rule.clip", "rule.name=alfa"),
        ("rule.generator_output=bounded", "rule.generator_output", "rule.name=alfa"),
        ("rule.state_encoding=log_sign", "rule.state_encoding", "rule.name=alfa"),
        ("rule.state_encoding=log", "rule.state_encoding", "raw"),
        ("name=../elsewhere", "name", "folder"),
        ("data=3", "data", "mapping"),
    ],
)
def test_invalid_values_name_the_key(override, key, words):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert f"'{key}'" in message and words in message
    assert "\n" not in message


def test_clip_needs_low_below_high():
    with pytest.raises(ConfigError, match=r"'rule\.clip'.*below"):
        load_config(None, ["rule.name=alfa", "rule.clip=[2,1]"])
    with pytest.raises(ConfigError, match=r"'rule\.clip'"):
        load_config(None, ["rule.name=alfa", "rule.clip=[1]"])


@pytest.mark.parametrize(
    "override, suggestion",
    [
        ("meta.setps=3", "meta.steps"),
        ("trian.iterations=3", "train"),
        ("iterations=3", "train.iterations"),
        ("rule.clp=[1,2]", "rule.clip"),
    ],
)
def test_unknown_keys_suggest_the_closest(override, suggestion):
    with pytest.raises(ConfigError, match="unknown config key") as info:
        load_config(None, [override])
    assert f"did you mean '{suggestion}'" in str(info.value)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["seed"])
    with pytest.raises(ConfigError, match="empty key"):
        parse_overrides(["=3"])
    with pytest.raises(ConfigError, match="conflicts"):
        parse_overrides(["data=1", "data.shots=3"])


def test_canonical_values():
    config = load_config(None, ["rule.name=alfa", "rule.generator_layers=3.0", "seed=4.0"])
    assert config.rule.generator_layers == 3 and isinstance(config.rule.generator_layers, int)
    assert config.seed == 4 and isinstance(config.seed, int)
    assert load_config(None, ["model.hidden=16,16"]).model.hidden == (16, 16)
    assert load_config(None, ["name=0123"]).name == "0123"  # free text is not YAML-parsed
    assert load_config(None, ["rule.name=alfa", "rule.clip="]).rule.clip == ()
    assert config_from_dict({"data": None}).data == Config().data


def test_yaml_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        read_yaml(missing)
    assert str(missing) in str(info.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        read_yaml(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_yaml(listing)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="text"):
        read_yaml(binary)
    with pytest.raises(ConfigError, match="directory"):
        read_yaml(tmp_path)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == Config()


def test_clip_parses_and_reaches_the_generator(tmp_path):
    config = load_config(None, ["rule.name=alfa", "rule.clip=[0.25,4]", "model.hidden=[4]"])
    assert config.rule.clip == (0.25, 4.0)
    learner = build_learner(config, task="regression", in_channels=1)
    assert learner.rule.generator is not None
    assert learner.rule.generator.clip == (0.25, 4.0)
    path = tmp_path / "clip.yaml"
    path.write_text("rule:\n  name: alfa\n  clip: [0.5, 2.0]\nmodel:\n  hidden: [4]\n")
    learner = build_learner(load_config(path), task="regression", in_channels=1)
    generator = learner.rule.generator
    assert generator.clip == (0.5, 2.0)
    # the bounds are applied: make g_phi's raw output large and check the clamp
    import torch

    with torch.no_grad():
        generator.net[-1].bias.fill_(100.0)
    out = generator(torch.zeros(3, generator.net[0].in_features)).detach()
    assert float(out.max()) == 2.0 and float(out.min()) == 2.0


def test_the_generator_preset_sets_the_switches_a_config_leaves_open(tmp_path):
    stable = load_config(None, ["rule.name=alfa", "rule.generator=stable"]).rule
    assert (stable.state_encoding, stable.generator_output, stable.state_statistics) == (
        "log_sign",
        "bounded",
        ("mean", "rms"),
    )
    # a switch beside the preset wins, and the config then says it is a custom mix
    mixed = load_config(
        None, ["rule.name=alfa", "rule.generator=stable", "rule.generator_output=linear"]
    ).rule
    assert (mixed.generator, mixed.generator_output, mixed.state_encoding) == (
        "custom",
        "linear",
        "log_sign",
    )
    # a preset named on the command line beats the switches of the file it overrides
    path = tmp_path / "paper.yaml"
    path.write_text("rule:\n  name: alfa\n  state_encoding: raw\n  generator_output: linear\n")
    assert load_config(path, ["rule.generator=stable"]).rule == stable
    # switches spelled out one by one are recognised as the preset they match
    spelled = ["rule.state_encoding=log_sign", "rule.generator_output=bounded"]
    assert (
        load_config(None, ["rule.name=alfa", *spelled, "rule.state_statistics=[mean,rms]"]).rule
        == stable
    )
    assert load_config(None, ["rule.name=alfa", spelled[0]]).rule.generator == "custom"
    assert load_config(None, ["rule.name=alfa"]).rule.generator == "paper"
    # a saved config reads back as it was, and so does one written before the key existed
    again = config_from_dict(
        yaml.safe_load(
            yaml.safe_dump(
                config_to_dict(
                    load_config(
                        None,
                        ["rule.name=alfa", "rule.generator=stable", "rule.generator_output=linear"],
                    )
                )
            )
        )
    )
    assert again.rule == mixed
    old = config_to_dict(load_config(None, ["rule.name=alfa", *spelled]))
    del old["rule"]["generator"]
    assert config_from_dict(old).rule.generator == "custom"
    with pytest.raises(ConfigError, match=r"'rule\.generator' is stable, a preset of ALFA"):
        load_config(None, ["rule.generator=stable"])
    with pytest.raises(ConfigError, match=r"'rule\.generator' must be one of"):
        load_config(None, ["rule.name=alfa", "rule.generator=steady"])


# --- property-based -----------------------------------------------------------------------------


def _leaves(cls: type = Config, prefix: str = "") -> dict[str, Any]:
    """Every dotted leaf key with its type hint."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(_leaves(hint, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = hint
    return out


LEAVES = _leaves()
small_text = st.text(st.sampled_from("abcxyz_-0123"), min_size=1, max_size=8)
finite = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False, allow_infinity=False)

VALID: dict[str, st.SearchStrategy[Any]] = {
    "seed": st.integers(0, 2**31),
    "name": small_text,
    "data.shots": st.integers(1, 50),
    "data.query": st.integers(0, 50),
    "data.eval_query": st.integers(1, 500),
    "data.family": st.sampled_from(["paper", "maml"]),
    "model.hidden": st.lists(st.integers(1, 64), min_size=1, max_size=3),
    "rule.name": st.sampled_from(["maml", "learned_fixed", "alfa"]),
    "rule.lr": finite,
    "rule.weight_decay": st.floats(0, 1, allow_nan=False),
    "rule.generator_input": st.sampled_from(["both", "weights", "gradients"]),
    "rule.generator_layers": st.sampled_from([2, 3]),
    "rule.per_step": st.booleans(),
    "rule.l2f": st.booleans(),
    "meta.init": st.sampled_from(["learned", "random"]),
    "meta.steps": st.integers(1, 10),
    "meta.first_order": st.booleans(),
    "meta.batch_size": st.integers(1, 64),
    "meta.lr": finite,
    "meta.grad_clip": st.floats(0, 100, allow_nan=False),
    "train.iterations": st.integers(1, 10**6),
    "train.val_every": st.integers(0, 1000),
    "train.keep_last": st.integers(1, 5),
    "train.threads": st.integers(0, 8),
    "eval.tasks": st.integers(1, 1000),
    "eval.first_order": st.booleans(),
}


def _text(value: Any) -> str:
    """How a user would type ``value`` on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(map(_text, value)) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _get(config: Config, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


@st.composite
def valid_overrides(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(sorted(VALID)), unique=True, max_size=8))
    chosen = {k: draw(VALID[k]) for k in keys}
    if chosen.get("meta.init") == "random" and chosen.get("rule.name", "maml") == "maml":
        chosen["rule.name"] = draw(st.sampled_from(["learned_fixed", "alfa"]))
    if chosen.get("rule.name") == "alfa" and draw(st.booleans()):
        low = draw(st.floats(0, 10, allow_nan=False))
        chosen["rule.clip"] = [low, low + draw(st.floats(0.01, 10, allow_nan=False))]
    return chosen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_overrides())
def test_valid_overrides_round_trip(chosen):
    config = load_config(None, [f"{k}={_text(v)}" for k, v in chosen.items()])
    for key, value in chosen.items():
        got = _get(config, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    again = config_from_dict(yaml.safe_load(text))
    assert again == config
    assert config_to_dict(again) == config_to_dict(config)


def _invalid_for(key: str, hint: Any) -> st.SearchStrategy[str]:
    """Override values that can never be valid for ``key``."""
    letters = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), min_size=1, max_size=6)
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        words = {"true", "false", "yes", "no", "on", "off", "y", "n"}
        # YAML reads these words as booleans: valid where a choice is a boolean
        taken = words if any(isinstance(c, bool) for c in choices) else set()
        return letters.filter(lambda s: s not in choices and s.lower() not in taken)
    if origin is tuple:
        return st.sampled_from(["{a: 1}", "{}"])
    if hint is bool:
        bool_words = {"true", "false", "yes", "no", "on", "off", "1", "0", "y", "n"}
        return letters.filter(lambda s: s.lower() not in bool_words)
    if hint is int:
        halves = st.integers(-1000, 1000).map(lambda i: f"{i}.5")
        return st.one_of(letters, halves, st.just("[1, 2]"), st.just("{a: 1}"))
    if hint is float:
        specials = st.sampled_from([".inf", "-.inf", ".nan", "nan", "inf", "[1.0]"])
        return st.one_of(letters.filter(lambda s: s not in ("nan", "inf")), specials)
    if key in STRING_CHOICES:
        return letters.filter(lambda s: s not in STRING_CHOICES[key])
    assert key == "name"
    return st.tuples(letters, st.sampled_from("/\\"), letters).map("".join)


STRING_CHOICES = {
    "data.name": DATASETS,
    "model.name": ("mlp",),  # sinusoid regression needs the MLP
    "train.device": ("auto", "cpu", "cuda"),
}
# Free text (paths, formats) accepts anything; every other key has values that are never valid.
TYPED = {k: h for k, h in LEAVES.items() if h is not str or k in STRING_CHOICES or k == "name"}
BELOW_MINIMUM = {
    "data.shots": 0,
    "data.eval_query": 0,
    "meta.steps": 0,
    "meta.batch_size": 0,
    "train.iterations": 0,
    "train.log_every": 0,
    "train.val_tasks": 0,
    "train.checkpoint_every": 0,
    "train.keep_last": 0,
    "eval.tasks": 0,
    "eval.batch": 0,
}


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_invalid_values_always_raise_naming_the_key(data):
    key = data.draw(st.sampled_from(sorted(TYPED)))
    raw = data.draw(_invalid_for(key, TYPED[key]))
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"{key}={raw}"])
    assert f"'{key}" in str(info.value)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(BELOW_MINIMUM)), st.integers(0, 10**6))
def test_values_below_the_minimum_raise_naming_the_key(key, below):
    value = BELOW_MINIMUM[key] - below
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"{key}={value}"])
    assert f"'{key}'" in str(info.value)


@settings(max_examples=40, deadline=None)
@given(st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz_"), min_size=1, max_size=12))
def test_unknown_keys_always_raise_naming_the_key(name):
    sections = {k.split(".")[0] for k in LEAVES}
    for key in (f"meta.{name}", name):
        if key in LEAVES or key in sections:
            continue
        with pytest.raises(ConfigError, match="unknown config key") as info:
            load_config(None, [f"{key}=1"])
        assert f"'{key}'" in str(info.value)
