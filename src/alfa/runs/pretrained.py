"""Pretrained models shipped inside the package (``src/alfa/resources/pretrained/``).

Each is an ``alfa export`` file named ``<name>.safetensors``; ``alfa adapt --pretrained NAME``
adapts it to a user's images with no data and no training. ``scripts/train_pretrained.sh``
re-creates them; the README ("Pretrained models") gives their training command, budget and
measured accuracy.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from alfa.errors import AlfaError

__all__ = ["describe_pretrained", "pretrained_names", "pretrained_path"]

_SUFFIX = ".safetensors"


def _folder() -> Path:
    return Path(str(resources.files("alfa") / "resources" / "pretrained"))


def pretrained_names() -> list[str]:
    """The names of the shipped models, sorted."""
    folder = _folder()
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(_SUFFIX)] for p in folder.glob(f"*{_SUFFIX}"))


def pretrained_path(name: str) -> Path:
    """The file of the shipped model ``name``.

    Raises:
        AlfaError: no such model (the message lists the available ones).
    """
    names = pretrained_names()
    if name not in names:
        available = ", ".join(names) or "none"
        raise AlfaError(f"no pretrained model '{name}'; available: {available}")
    return _folder() / f"{name}{_SUFFIX}"


def describe_pretrained(name: str) -> str:
    """One line about a shipped model: task, input, backbone, rule and training length."""
    from alfa.runs.export import read_export

    exported = read_export(pretrained_path(name))
    c, meta = exported.config, exported.metadata
    inputs = ""
    if exported.preprocessing is not None:
        p = exported.preprocessing
        inputs = f", {p.image_size}x{p.image_size} {'grey' if p.channels == 1 else 'RGB'}"
    backbone = c.model.name + (f" ({c.model.filters} filters)" if c.model.name == "conv4" else "")
    classes = json.loads(meta["config"])["data"].get("split_file", "")
    trained_on = f" on {Path(classes).name}" if classes else ""
    return (
        f"{name}: {c.data.name} {c.data.ways}-way {c.data.shots}-shot{inputs}, {backbone}, "
        f"rule {c.rule.name}, {c.meta.steps} inner steps, "
        f"{exported.iteration} meta-iterations{trained_on}"
    )
