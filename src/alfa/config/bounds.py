"""Bounds on what a config may hold, checked before anything is built from it.

A config is plain text that can hold any number: ``model.hidden=[10**19]`` or
``meta.steps=10**30`` would otherwise end deep inside PyTorch or the memory estimate as an
overflow. Integers are bounded by :data:`MAX_INT`, counts by :data:`MAX_COUNT` and layer widths
by :data:`MAX_WIDTH`; YAML is refused past :data:`alfa.limits.MAX_DEPTH` levels of nesting, and
text keys may not hold NUL characters (checked where values are read, in
:mod:`alfa.config.load`). A config within these bounds can still need more memory than there is:
that is the memory estimate's to refuse, with what to lower.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from alfa.errors import ConfigError
from alfa.limits import MAX_DEPTH

__all__ = [
    "JITTER_BOUNDS",
    "MAX_COUNT",
    "MAX_INT",
    "MAX_WIDTH",
    "check_counts",
    "short",
    "yaml_depth_check",
]

MAX_INT = 2**63 - 1
"""The largest integer a config key may hold (seeds use all of it; sizes and counts are
bounded further when the config is validated)."""

MAX_COUNT = 2**31 - 1
"""The largest count (iterations, steps, tasks, sizes...) a config key may hold."""

MAX_WIDTH = 2**20
"""The largest layer width (``model.hidden`` entries, ``model.filters``)."""


JITTER_BOUNDS = {"degrees": 180.0, "shift": 0.5, "scale": 0.9}
"""The largest range of each part of the training images' affine jitter (``data.jitter_*``,
:class:`alfa.data.augment.AffineJitter`): 180 degrees already turns a drawing every way, a
shift of half the side moves it out of view, and a zoom range of 0.9 keeps factors in
``[0.1, 1.9]``."""


def short(value: Any) -> str:
    """``repr(value)`` cut to 60 characters for a message."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def yaml_depth_check(text: str, where: str) -> None:
    """Refuse YAML nested deeper than :data:`alfa.limits.MAX_DEPTH` before it is composed
    (PyYAML's composer recurses once per level: 5000 levels are a ``RecursionError``).

    Raises:
        ConfigError: naming ``where``.
    """
    if text.count("[") + text.count("{") + text.count(":") + text.count("-") <= MAX_DEPTH:
        return
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigError(
                        f"{where} is nested more than {MAX_DEPTH} levels deep; refused"
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # the loader reports it, with its line


def check_counts(config: Any, prefix: str = "") -> None:
    """Every integer key of ``config`` (a :class:`~alfa.config.schema.Config` or one of its
    sections) but the seeds holds at most :data:`MAX_COUNT`.

    Raises:
        ConfigError: naming the key.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_counts(value, f"{key}.")  # type: ignore[arg-type]
            continue
        counted = isinstance(value, int) and not isinstance(value, bool)
        if counted and key.rsplit(".")[-1] != "seed" and value > MAX_COUNT:
            raise ConfigError(f"config key '{key}' must be at most {MAX_COUNT}; got {value}")
