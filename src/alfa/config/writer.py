"""Write a config as a short YAML file: a comment header and only the keys that differ from the
defaults (the shipped files under ``configs/`` are written this way), and for ALFA always the
generator preset (``rule.generator``), so that a shipped config keeps its generator whatever
:data:`~alfa.config.schema.DEFAULT_GENERATOR` becomes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from alfa.config import Config, config_to_dict

__all__ = ["write_config"]


def _short(config: Config) -> dict[str, Any]:
    """Only the keys that differ from the defaults, and ``rule.generator`` of an ALFA rule."""

    def diff(d: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in d.items():
            if isinstance(value, dict):
                sub = diff(value, base[key])
                if sub:
                    out[key] = sub
            elif value != base[key]:
                out[key] = value
        return out

    short = diff(config_to_dict(config), config_to_dict(Config()))
    if config.rule.name == "alfa":
        short["rule"] = {**short.get("rule", {}), "generator": config.rule.generator}
    return short


def write_config(path: Path, config: Config, header: str) -> Path:
    """Write ``config`` as a short YAML file (only keys that differ from the defaults)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    path.write_text(comment + yaml.safe_dump(_short(config), sort_keys=False))
    return path
