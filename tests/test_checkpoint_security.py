"""Checkpoints load with ``weights_only=True``: a crafted pickle never runs, in either format.

A malicious checkpoint here carries a valid checksum (an attacker can compute one), so only the
loader's refusal to unpickle anything but tensors and plain data stands between the file and
arbitrary code. Every test checks that the marker file the payload would create is not there.
"""

from __future__ import annotations

import hashlib
import io
import random
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from alfa.cli.main import main
from alfa.runs.checkpoint import (
    LEGACY_MAGIC,
    TRAILER,
    CheckpointError,
    latest_good_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from alfa.runs.train import _rng_state, _set_rng_state
from metahelpers import TINY


class Payload:
    """Unpickling this runs ``exec``, which creates ``marker``: arbitrary code on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def sealed(archive: bytes) -> bytes:
    """``archive`` with a valid checksum in alfa's format (zip comment ``alfa-sha256:<hex>``),
    written here from the format's description, as an attacker would."""
    body = archive[:-2] + struct.pack("<H", len(TRAILER) + 64)
    return body + TRAILER + hashlib.sha256(body).hexdigest().encode()


def legacy(payload: bytes) -> bytes:
    """The old format: header, SHA-256 of the payload, payload."""
    return LEGACY_MAGIC + hashlib.sha256(payload).digest() + payload


def evil_state(marker: Path) -> dict[str, Any]:
    return {"iteration": 20, "learner": {"w": torch.zeros(2)}, "extra": Payload(marker)}


def write_evil(path: Path, marker: Path, fmt: str) -> None:
    payload = torch_bytes(evil_state(marker))
    path.write_bytes(sealed(payload) if fmt == "new" else legacy(payload))


def test_the_payload_is_real(tmp_path):
    """Control: loaded the unsafe way, the crafted payload does run (so the tests below test)."""
    marker = tmp_path / "pwned"
    torch.load(io.BytesIO(torch_bytes(evil_state(marker))), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    "fmt, words",
    [
        ("new", ["builtins.exec", "could run code"]),
        ("old", ["old unsafe format", "builtins.exec", "must be re-created"]),
    ],
)
def test_load_checkpoint_refuses_a_malicious_checkpoint(tmp_path, fmt, words):
    path, marker = tmp_path / "step-0000020.pt", tmp_path / "pwned"
    write_evil(path, marker, fmt)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert all(word in message for word in words), message
    assert "checksum" not in message  # the checksum was valid: the content was refused
    assert not marker.exists()


def test_latest_good_checkpoint_skips_a_malicious_one(tmp_path, capsys):
    save_checkpoint(tmp_path / "step-0000010.pt", {"iteration": 10, "learner": {}})
    marker = tmp_path / "pwned"
    write_evil(tmp_path / "step-0000020.pt", marker, "new")
    path, state = latest_good_checkpoint(tmp_path)
    assert path.name == "step-0000010.pt" and state["iteration"] == 10
    assert "step-0000020.pt" in capsys.readouterr().err
    assert not marker.exists()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("security") / "run"
    assert main(["train", *TINY, "--run-dir", str(run), "--no-progress"]) == 0
    return run


def _error_line(err: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("alfa: error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize("fmt", ["new", "old"])
def test_alfa_eval_refuses_a_malicious_checkpoint(trained_run, tmp_path, capsys, fmt):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    shutil.copytree(trained_run, run)
    folder = run / "checkpoints"
    for path in [folder / "best.pt", *list_checkpoints(folder)]:
        write_evil(path, marker, fmt)
    capsys.readouterr()
    for extra in ([], ["--checkpoint", "last"]):
        assert main(["eval", str(run), "--tasks", "5", *extra]) == 2
        line = _error_line(capsys.readouterr().err)
        assert str(folder) in line and "could run code" in line
        assert ("old unsafe format" in line) == (fmt == "old")
    assert not marker.exists()


def test_a_run_checkpoint_is_a_plain_torch_file(trained_run):
    path = trained_run / "checkpoints" / "step-0000020.pt"
    plain = torch.load(path, weights_only=True)  # no alfa code, no allow-list
    state = load_checkpoint(path)
    assert plain.keys() == state.keys()
    assert plain["iteration"] == state["iteration"] == 20
    for name, tensor in state["learner"].items():
        assert torch.equal(plain["learner"][name], tensor)
    assert isinstance(state["rng"]["numpy"]["state"]["key"], torch.Tensor)
    assert zipfile.ZipFile(path).comment.startswith(TRAILER)  # the checksum, in the zip


def test_round_trip_keeps_every_generator_exact(tmp_path):
    np.random.seed(3)
    np.random.randn()  # leaves a cached Gaussian in the NumPy state
    random.seed(4)
    state = {
        "iteration": 1,
        "learner": {"w": torch.randn(3)},
        "rng": _rng_state(torch.device("cpu")),
    }
    save_checkpoint(tmp_path / "c.pt", state)
    expected = (torch.rand(2), random.random(), np.random.randn(3))
    _set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    again = (torch.rand(2), random.random(), np.random.randn(3))
    assert torch.equal(expected[0], again[0]) and expected[1] == again[1]
    assert np.array_equal(expected[2], again[2])


def test_an_old_checkpoint_with_numpy_state_still_loads_and_restores(tmp_path):
    np.random.seed(5)
    old = {
        "iteration": 7,
        "learner": {"w": torch.arange(3.0)},
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()}
        | {"numpy": np.random.get_state()},
    }
    path = tmp_path / "step-0000007.pt"
    path.write_bytes(legacy(torch_bytes(old)))
    expected = np.random.randn(4)
    state = load_checkpoint(path)
    assert state["iteration"] == 7 and torch.equal(state["learner"]["w"], torch.arange(3.0))
    _set_rng_state(state["rng"])
    assert np.array_equal(np.random.randn(4), expected)


def test_saving_refuses_state_that_weights_only_would_refuse(tmp_path):
    state = {"iteration": 1, "learner": {}, "rng": {"numpy": np.random.get_state()}}
    with pytest.raises(TypeError, match=r"state\['rng'\]\['numpy'\]\[1\] is a numpy.ndarray"):
        save_checkpoint(tmp_path / "c.pt", state)
    assert not (tmp_path / "c.pt").exists()


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda b: b[:-30], "truncated"),
        (lambda b: b[: len(b) // 3], "truncated"),
        (lambda b: b[:100] + bytes([b[100] ^ 4]) + b[101:], "checksum mismatch"),
    ],
)
def test_damaged_checkpoints_are_still_reported(tmp_path, damage, words):
    path = tmp_path / "step-0000001.pt"
    save_checkpoint(path, {"iteration": 1, "learner": {"w": torch.ones(50)}})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=words) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
