"""``alfa train --dry-run``: what a run would be, without running it or touching the disk.

It prints the resolved config, the number of meta-parameters and the estimated peak memory
(:func:`alfa.runs.memory.estimate`), and the command refuses a run that cannot fit
(:func:`alfa.runs.memory.check_memory`).
The data is checked without being loaded (:func:`check_data`): every dataset path exists
(environment variables such as ``$ALFA_DATA`` set), holds a format of the configured dataset,
and every class-list file can be read. No image is decoded: the base learner
(:func:`alfa.models.build_model`) and the rule (:func:`alfa.rules.build_rule`) are built on
PyTorch's ``meta`` device, which holds shapes only, so even a model far too large for the
machine is counted without allocating it. An image dataset's channels are assumed from its name
(1 for Omniglot, else 3), as the data would say.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from alfa.config import Config

__all__ = ["MetaParameters", "check_data", "count_meta_parameters", "dry_run_report"]


@dataclass(frozen=True)
class MetaParameters:
    """Parameter counts of a learner as :func:`alfa.runs.build.build_learner` builds it."""

    base: int  # parameters of the base learner (its initialisation)
    rule: int  # meta-learned parameters of the update rule
    learn_init: bool  # whether the initialisation is meta-learned (meta.init=learned)

    @property
    def total(self) -> int:
        """Meta-parameters: the rule's, and the base learner's when its init is learned."""
        return self.rule + (self.base if self.learn_init else 0)


def in_channels(config: Config) -> int:
    """Image channels the data would have: 1 for regression and Omniglot, 3 otherwise."""
    return 1 if config.data.name in ("sinusoid", "omniglot") else 3


def count_meta_parameters(config: Config) -> MetaParameters:
    """Count the base learner's and the rule's parameters, built on the ``meta`` device."""
    from alfa.runs.build import build_model_and_rule

    with torch.device("meta"):
        model, rule = build_model_and_rule(config, in_channels=in_channels(config))
    return MetaParameters(
        base=sum(p.numel() for p in model.parameters()),
        rule=sum(p.numel() for p in rule.parameters() if p.requires_grad),
        learn_init=config.meta.init == "learned",
    )


def check_data(config: Config, kept: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """What a run would read, checked without loading it: one line per dataset path and class
    list (none for sinusoid regression, whose tasks are generated).

    Args:
        kept: the class lists a resumed run keeps (:mod:`alfa.runs.class_lists`), used instead
            of the files of its config.

    Raises:
        DataError: a path uses an environment variable that is not set, does not exist or holds
            no format of the configured dataset, or a class-list file cannot be read; the
            message names the config key.
    """
    from alfa.data.formats import detect_format, split_paths
    from alfa.errors import DataError
    from alfa.runs.class_lists import config_class_lists
    from alfa.tasks.episodic import CLASS_LIST_KEYS, dataset_formats

    d = config.data
    if d.name in ("sinusoid", "metadataset"):  # generated, or read by metadataset_run
        return []
    roots = [("data.root", d.name, d.root, d.format)]
    if d.test_root:
        fmt = d.test_format or ("" if d.test_name else d.format)
        roots.append(("data.test_root", d.test_name or d.name, d.test_root, fmt))
    lines = []
    for key, name, root, fmt in roots:
        try:
            paths = split_paths(root)
            found = sorted({fmt or detect_format(p) for p in paths})
        except DataError as exc:
            raise DataError(f"config key '{key}': {exc}") from exc
        wrong = [f for f in found if f not in dataset_formats(name)]
        if wrong:
            raise DataError(
                f"config key '{key}' holds format '{wrong[0]}', which is not a {name} format "
                f"({', '.join(dataset_formats(name))})"
            )
        lines.append(f"data: {key} = {', '.join(map(str, paths))} ({', '.join(found)})")
    kept = dict(kept or {})
    for split, names in (
        config_class_lists(config, only=set(CLASS_LIST_KEYS) - set(kept)) | kept
    ).items():
        lines.append(f"data: {split} class list: {len(names)} classes")
    return lines


def _parts(parts: dict[str, int]) -> str:
    from alfa.runs.memory import _size

    return "; ".join(f"{key}: {_size(n)}" for key, n in parts.items())


def dry_run_report(
    config: Config, run_dir: Path | None, kept: Mapping[str, Sequence[str]] | None = None
) -> str:
    """The text ``alfa train --dry-run`` prints (the memory check is separate).

    Raises:
        ConfigError: ``train.device`` is cuda and no GPU is present.
        DataError: the data cannot be found (:func:`check_data`).
    """
    from alfa.config.docs import config_yaml
    from alfa.runs.build import resolve_device
    from alfa.runs.memory import _size, device_memory, estimate, host_memory

    device = resolve_device(config.train.device)
    counts = count_meta_parameters(config)
    lines = [config_yaml(config).rstrip("\n"), "", *check_data(config, kept)]
    if run_dir is not None:
        lines.append(f"run directory: {run_dir} (not created: dry run)")
    if counts.learn_init:
        detail = f"base learner {counts.base:,} + rule {counts.rule:,}"
    else:
        detail = (
            f"the rule's; the base learner's {counts.base:,} are a fixed random "
            "initialisation (meta.init=random)"
        )
    lines.append(f"meta-parameters: {counts.total:,} ({detail})")
    on_device, on_host = estimate(config)
    if device.type != "cuda":
        on_host, on_device = {**on_device, **on_host}, {}
    for parts, limit, where in (
        (on_device, device_memory(device) if on_device else None, f"the {device.type} device"),
        (on_host, host_memory(), "this machine"),
    ):
        if not parts:
            continue
        total = sum(parts.values())
        available = f" of {_size(limit)}" if limit is not None else ""
        lines.append(
            f"estimated peak memory on {where}: at least {_size(total)}{available} "
            f"({_parts(parts)})"
        )
    return "\n".join(lines) + "\n"
