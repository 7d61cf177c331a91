"""``alfa export``: meta-learned weights as a safetensors file that eval and adapt accept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from alfa.cli.main import main
from alfa.config import config_to_dict
from alfa.runs.checkpoint import load_checkpoint
from alfa.runs.reopen import load_run_config
from test_classification import _tiny, _write_folder_dataset


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny ALFA+MAML 3-way 1-shot 4-CONV run on a folder dataset (checkpoints at 2 and 4)."""
    base = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    data = _write_folder_dataset(base / "data")
    run = base / "run"
    args = ["train", *_tiny(data, "rule.name=alfa"), "--run-dir", str(run), "--no-progress"]
    assert main(args) == 0
    return run


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("alfa: error: "), err
    return lines[0]


def _eval(target: Path, capsys, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["eval", str(target), "--tasks", "12", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_export_holds_the_checkpoints_weights_and_config(run, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    assert main(["export", str(run), "--checkpoint", "step-0000002.pt", "--to", str(out)]) == 0
    assert "iteration 2" in capsys.readouterr().out
    state = load_checkpoint(run / "checkpoints" / "step-0000002.pt")["learner"]
    tensors = safetensors.torch.load_file(str(out))
    assert sorted(tensors) == sorted(state)
    assert any(k.startswith("rule.generator.") for k in tensors)  # ALFA's g_phi travels too
    for name, tensor in state.items():
        assert torch.equal(tensors[name], tensor), name
    with safetensors.safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["config"]) == config_to_dict(load_run_config(run))
    prep = json.loads(meta["preprocessing"])
    assert prep == {
        "image_size": 16,
        "channels": 3,
        "resample": "bilinear",
        "invert": False,
        "crop_scale": 1.0,
        "normalise": "imagenet",
    }
    assert meta["task"] == "classification" and meta["in_channels"] == "3"


def test_eval_of_an_export_gives_the_runs_numbers(run, tmp_path, capsys):
    out = tmp_path / "last.safetensors"
    assert main(["export", str(run), "--checkpoint", "last", "--to", str(out)]) == 0
    from_run = _eval(run, capsys, "--checkpoint", "last")
    from_export = _eval(out, capsys)
    for key in ("mean", "ci95", "std", "per_prediction_std", "tasks", "steps", "iteration"):
        assert from_export[key] == from_run[key], key
    assert from_export["checkpoint"] == "last.safetensors"
    # the export records the iteration of the checkpoint it came from
    other = tmp_path / "early.safetensors"
    assert main(["export", str(run), "--checkpoint", "step-0000002.pt", "--to", str(other)]) == 0
    assert _eval(other, capsys)["iteration"] == 2


def _rewrite(path: Path, tensors: dict, metadata: dict) -> None:
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "foreign", "edited", "empty"])
def test_damaged_or_foreign_export_is_one_line(run, tmp_path, capsys, damage):
    good = tmp_path / "good.safetensors"
    assert main(["export", str(run), "--to", str(good)]) == 0
    raw = good.read_bytes()
    bad = tmp_path / "bad.safetensors"
    if damage == "flip":  # one bit of a tensor
        bad.write_bytes(raw[:-5] + bytes([raw[-5] ^ 1]) + raw[-4:])
        expected = "SHA-256 does not match"
    elif damage == "truncate":
        bad.write_bytes(raw[: len(raw) - 40])
        expected = "is damaged"
    elif damage == "garbage":
        bad.write_bytes(b"\x00" * 8 + b"not json at all")
        expected = "not a safetensors file"
    elif damage == "empty":
        bad.write_bytes(b"")
        expected = "not a safetensors file"
    else:
        tensors = safetensors.torch.load(raw)
        with safetensors.safe_open(str(good), "pt") as f:
            meta = f.metadata()
        if damage == "foreign":  # a valid safetensors file from elsewhere
            _rewrite(bad, {"weight": torch.ones(2)}, {"format": "pt"})
            expected = "not an alfa export"
        else:  # the config edited (meta.steps) without a new checksum
            config = json.loads(meta["config"])
            config["meta"]["steps"] = 5
            _rewrite(bad, tensors, {**meta, "config": json.dumps(config)})
            expected = "SHA-256 does not match"
    capsys.readouterr()
    for command in (["eval", str(bad)], ["adapt", str(bad), str(tmp_path), str(bad)]):
        assert main(command) == 2
        line = _one_error(capsys)
        assert str(bad) in line and expected in line, line


def test_export_refuses_bad_targets(run, tmp_path, capsys):
    assert main(["export", str(run), "--to", str(tmp_path / "model.pt")]) == 2
    assert ".safetensors" in _one_error(capsys)
    assert (
        main(
            ["export", str(run), "--checkpoint", "nope.pt", "--to", str(tmp_path / "m.safetensors")]
        )
        == 2
    )
    assert "nope.pt" in _one_error(capsys)
    assert main(["export", str(tmp_path / "missing"), "--to", str(tmp_path / "m.safetensors")]) == 2
    assert "does not exist" in _one_error(capsys)
    exported = tmp_path / "m.safetensors"
    assert main(["export", str(run), "--to", str(exported)]) == 0
    assert main(["eval", str(exported), "--checkpoint", "last"]) == 2
    assert "export file" in _one_error(capsys)
    assert main(["eval", str(exported), "--ensemble", "2"]) == 2
    assert "run directory" in _one_error(capsys)
