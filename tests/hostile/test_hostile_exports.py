"""Exports and checkpoints from elsewhere: a config that asks for a model of terabytes, an image
size of 60000, JSON nested 100000 deep in a header or a config, a checkpoint nested 5000 deep,
integer weights, preprocessing that disagrees with the config, a split file that is any file of
the machine, top-k checkpoints without a score; and "last good" on a real divergence.

An export's SHA-256 is self-declared: each crafted export here carries a matching one, computed
as ``alfa export`` computes it, so the checks below are what stands between it and the model."""

from __future__ import annotations

import functools
import io
import json
import pickle
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from crafted import folder_dataset, sparse
from hostile_conftest import Case, check

from alfa.cli.main import main
from alfa.runs.checkpoint import _seal, load_checkpoint
from alfa.runs.export import _digest, _split

SINUSOID = [
    "train.iterations=2",
    "train.checkpoint_every=1",
    "train.val_every=0",
    "meta.batch_size=2",
    "meta.steps=1",
    "model.hidden=[4]",
    "train.threads=1",
]


@functools.cache
def _trained(base: Path) -> dict[str, Path]:
    """A tiny sinusoid run and a tiny 2-way folder run under ``base``, and their exports."""
    base.mkdir(parents=True, exist_ok=True)
    data = folder_dataset(base / "data", classes=4, images=3)
    (base / "train.txt").write_text("c0\nc1\n")
    (base / "test.txt").write_text("c2\nc3\n")
    image = [
        "data.name=folder",
        f"data.root={data}",
        f"data.split_file={base / 'train.txt'}",
        f"data.test_split_file={base / 'test.txt'}",
        "data.ways=2",
        "data.shots=1",
        "data.query=1",
        "data.image_size=16",
        "model.name=conv4",
        "model.filters=2",
        *SINUSOID[:-2],
        "train.threads=1",
    ]
    out = {"data": data}
    for name, argv in (("sinusoid", SINUSOID), ("image", image)):
        run = base / name
        assert main(["train", *argv, "--run-dir", str(run), "--no-progress"]) == 0
        assert main(["export", str(run), "--to", str(base / f"{name}.safetensors")]) == 0
        out[name], out[f"{name}_export"] = run, base / f"{name}.safetensors"
    return out


def _metadata(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    header, _ = _split(path.read_bytes(), path)
    meta = dict(header["__metadata__"])
    meta.pop("sha256")
    return meta, safetensors.torch.load(path.read_bytes())


def _write(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
    """An export with a matching SHA-256, as ``alfa export`` writes one."""
    _, data = _split(safetensors.torch.save(tensors, metadata=meta), path)
    meta = dict(meta, sha256=_digest(data, meta))
    path.write_bytes(safetensors.torch.save(tensors, metadata=meta))
    return path


def _edited(
    which: str,
    edit: Callable[[dict[str, Any], dict[str, str], dict[str, torch.Tensor]], None],
    command: Callable[[Path, dict[str, Path], Path], list[str]] | None = None,
):
    """A case: the ``which`` export with its config (as data), metadata or tensors edited."""

    def build(folder: Path) -> dict[str, Any]:
        runs = _trained(folder.parent / "trained")
        meta, tensors = _metadata(runs[f"{which}_export"])
        before = meta["config"]
        config = json.loads(before)
        edit(config, meta, tensors)
        if meta["config"] == before:  # the edit changed the config as data
            meta["config"] = json.dumps(config, sort_keys=True)
        path = _write(folder / "model.safetensors", tensors, meta)
        argv = command(path, runs, folder) if command else ["eval", str(path), "--tasks", "2"]
        return {"argv": argv}

    return build


def _big_conv4(config: dict, meta: dict, tensors: dict) -> None:
    config["model"]["filters"] = 200000


def _big_mlp(config: dict, meta: dict, tensors: dict) -> None:
    config["model"]["hidden"] = [300000, 300000]


def _image_size(config: dict, meta: dict, tensors: dict) -> None:
    prep = json.loads(meta["preprocessing"])
    meta["preprocessing"] = json.dumps(dict(prep, image_size=60000))


def _adapt(path: Path, runs: dict[str, Path], folder: Path) -> list[str]:
    support = runs["data"]
    return ["adapt", str(path), str(support), str(support / "c0" / "0.png")]


def _deep_config(config: dict, meta: dict, tensors: dict) -> None:
    meta["config"] = "[" * 100000 + "]" * 100000


def _integer_weights(config: dict, meta: dict, tensors: dict) -> None:
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = tensors[name].round().to(torch.int64)


def _passwd(config: dict, meta: dict, tensors: dict) -> None:
    """The config names /etc/passwd as its test class list, and the export keeps no class lists
    of its own (as one written before they were kept), so evaluating it reads that file."""
    config["data"]["test_split_file"] = "/etc/passwd"
    meta.pop("class_lists", None)


def _other_preprocessing(config: dict, meta: dict, tensors: dict) -> None:
    prep = json.loads(meta["preprocessing"])
    meta["preprocessing"] = json.dumps(dict(prep, image_size=32))


def _no_preprocessing(config: dict, meta: dict, tensors: dict) -> None:
    meta["preprocessing"] = "null"


def _deep_header(folder: Path) -> dict[str, Any]:
    header = b'{"__metadata__": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    path = folder / "model.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    return {"argv": ["eval", str(path)]}


def _deep_lists(depth: int) -> bytes:
    """Pickle opcodes that build a list ``depth`` lists deep (no recursion writes or reads it)."""
    return pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1)


def _deep_checkpoint(folder: Path) -> dict[str, Any]:
    """A copy of a real run whose newest checkpoint's config (sealed, so its checksum matches)
    nests 5000 lists deep; resumed."""
    runs = _trained(folder.parent / "trained")
    run = folder / "run"
    shutil.copytree(runs["sinusoid"], run)
    newest = run / "checkpoints" / "step-0000002.pt"
    state = load_checkpoint(newest)
    state["config"] = "PLACEHOLDER"
    buffer = io.BytesIO()
    torch.save(state, buffer)
    placeholder = pickle.BINUNICODE + (11).to_bytes(4, "little") + b"PLACEHOLDER"
    archive = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src,
        zipfile.ZipFile(archive, "w") as dst,
    ):
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                assert data.count(placeholder) == 1
                data = data.replace(placeholder, _deep_lists(5000))
            dst.writestr(info, data)
    newest.write_bytes(_seal(archive.getvalue()))
    return {"argv": ["train", "--resume", str(run), "train.iterations=3", "--no-progress"]}


def _top_without_score(folder: Path) -> dict[str, Any]:
    runs = _trained(folder.parent / "trained")
    run = folder / "run"
    shutil.copytree(runs["sinusoid"], run)
    for step in (1, 2):
        source = run / "checkpoints" / f"step-000000{step}.pt"
        shutil.copy(source, run / "checkpoints" / f"top-000000{step}.pt")
    return {"argv": ["eval", str(run), "--ensemble", "2", "--tasks", "2"]}


def _metrics(kind: str):
    """A copy of a real run whose metrics.jsonl is a sparse file of 64 GiB or holds a line
    nested 100000 deep; resumed."""

    def build(folder: Path) -> dict[str, Any]:
        runs = _trained(folder.parent / "trained")
        run = folder / "run"
        shutil.copytree(runs["sinusoid"], run)
        if kind == "sparse":
            sparse(run / "metrics.jsonl")
        else:
            with open(run / "metrics.jsonl", "a") as fh:
                fh.write('{"iteration": ' + "[" * 100000 + "]" * 100000 + "}\n")
                fh.write('{"iteration": 3}\n')
        return {"argv": ["train", "--resume", str(run), "train.iterations=3", "--no-progress"]}

    return build


def _diverging(folder: Path) -> dict[str, Any]:
    """ALFA on sinusoid with a large meta learning rate: validation MSE 7.5 at iteration 2, about
    5e18 from iteration 3 on (finite weights), a loss that overflows at iteration 15."""
    argv = [
        "train",
        "rule.name=alfa",
        "train.iterations=30",
        "train.checkpoint_every=1",
        "train.keep_last=1000",
        "train.log_every=1",
        "train.val_every=1",
        "train.val_tasks=10",
        "meta.batch_size=2",
        "meta.steps=3",
        "model.hidden=[8]",
        "train.threads=1",
        "meta.lr=0.1",
        "rule.lr=0.3",
        "--run-dir",
        str(folder / "run"),
        "--no-progress",
    ]
    return {"argv": argv}


CASES: dict[str, Case] = {
    "export asking for a conv4 of 200000 filters": Case(
        _edited("image", _big_conv4), ("model.safetensors", "needs an estimated", "smaller model")
    ),
    "export asking for an MLP of 300000 x 300000": Case(
        _edited("sinusoid", _big_mlp), ("model.safetensors", "needs an estimated", "smaller model")
    ),
    "export preprocessing image_size 60000 in alfa adapt": Case(
        _edited("image", _image_size, _adapt), ("model.safetensors", "image_size", "8192")
    ),
    "export header nested 100000 deep": Case(_deep_header, ("model.safetensors", "nested")),
    "export config nested 100000 deep": Case(
        _edited("sinusoid", _deep_config), ("model.safetensors", "nested")
    ),
    "export with integer weights": Case(
        _edited("sinusoid", _integer_weights), ("model.safetensors", "int64", "float32")
    ),
    "export whose split file is /etc/passwd": Case(
        _edited("image", _passwd), ("/etc/passwd", "line 1")
    ),
    "export whose preprocessing disagrees with its config": Case(
        _edited("image", _other_preprocessing), ("model.safetensors", "image_size 32", "16")
    ),
    "export without preprocessing": Case(
        _edited("image", _no_preprocessing), ("model.safetensors", "no preprocessing")
    ),
    "checkpoint nested 5000 deep, resumed from the one before": Case(
        _deep_checkpoint,
        ("step-0000002.pt", "nested", "falling back to the previous good checkpoint"),
        kind="warning",
        rc=0,
    ),
    "metrics.jsonl of 64 GiB (sparse), resumed": Case(
        _metrics("sparse"),
        ("metrics.jsonl", "64.0 GiB"),
        keep=("run/checkpoints/step-0000001.pt", "run/checkpoints/step-0000002.pt"),
    ),
    "a metrics line nested 100000 deep, resumed": Case(
        _metrics("deep"),
        ("metrics.jsonl", "nested"),
        keep=("run/metrics.jsonl", "run/checkpoints/step-0000002.pt"),
    ),
    "top-k checkpoints without a score, eval --ensemble 2": Case(
        _top_without_score, ("top-0000001.pt", "score")
    ),
    "a real divergence: last good is good": Case(
        _diverging, ("iteration 15", "step-0000002.pt", "far worse than the run's best"), rc=3
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_exports(hostile, name):
    check(CASES[name], hostile[name])


def test_no_line_of_the_split_file_is_echoed(hostile):
    result = hostile["export whose split file is /etc/passwd"]
    first = Path("/etc/passwd").read_text().splitlines()[0]
    assert first not in result["out"] + result["err"]
