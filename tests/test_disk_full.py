"""A disk that fills up during training: one line (exit 2) naming the file that could not be
written, every checkpoint and metrics record written before intact, no torn record, and the run
resumes (once there is room) to end exactly as an uninterrupted one.

The full disk is simulated: ``os.write`` to files under the run directory accepts a fixed
number of bytes in all, writes what fits of the last call (as a real disk does), then refuses
with ``ENOSPC``."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from alfa.cli.main import main
from alfa.runs.checkpoint import list_checkpoints, load_checkpoint
from alfa.runs.durable import append_record
from alfa.runs.runlog import read_metrics
from metahelpers import TINY
from test_resume import assert_same
from test_rough_edges import error_line, run_cli

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


class FullDisk:
    """Patches ``os.write``: writes to files under ``root`` share ``room`` bytes (None: no
    limit); ``writes`` records each accepted write as (file name, bytes)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path, room: int | None) -> None:
        self.root, self.room = str(root.resolve()), room
        self.writes: list[tuple[str, int]] = []
        self._real = os.write
        monkeypatch.setattr(os, "write", self.write)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if not target.startswith(self.root + os.sep):
            return self._real(fd, data)
        if self.room is not None:
            if self.room == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            data = memoryview(data)[: self.room]
        written = self._real(fd, data)
        if self.room is not None:
            self.room -= written
        self.writes.append((Path(target).name, written))
        return written


def _train(run: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_cli(capsys, "train", *TINY, "--run-dir", str(run), "--no-progress")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, int]]]:
    """An uninterrupted run and the writes it made, in order."""
    run = tmp_path_factory.mktemp("disk") / "run"
    with pytest.MonkeyPatch.context() as patch:
        disk = FullDisk(patch, run.parent, None)
        assert main(["train", *TINY, "--run-dir", str(run), "--no-progress"]) == 0
    return run, disk.writes


def _room_until(writes: list[tuple[str, int]], name: str, nth: int, inside: int) -> int:
    """Room that runs out ``inside`` bytes into the ``nth`` write to a file named like
    ``name`` (a prefix: temporary checkpoint files carry a suffix)."""
    room, seen = 0, 0
    for target, size in writes:
        if target.lstrip(".").startswith(name):
            seen += 1
            if seen == nth:
                assert 0 < inside < size
                return room + inside
        room += size
    raise AssertionError(f"no write number {nth} to {name}")


@pytest.mark.parametrize(
    ("name", "nth", "file"),
    [
        ("metrics.jsonl", 3, "metrics.jsonl"),  # the record of iteration 10, before its checkpoint
        ("metrics.jsonl", 5, "metrics.jsonl"),  # after the first checkpoint
        ("step-0000020.pt", 1, "step-0000020.pt"),  # the final checkpoint
        ("best.pt", 2, "best.pt"),  # the best checkpoint at the second validation
    ],
)
def test_a_full_disk_is_one_line_and_loses_nothing_written(
    reference, tmp_path, monkeypatch, capsys, name, nth, file
):
    ref_run, writes = reference
    if name == "best.pt" and sum(w[0].lstrip(".").startswith("best.pt") for w in writes) < 2:
        pytest.skip("the second validation was not the best in this run")
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        FullDisk(patch, tmp_path, _room_until(writes, name, nth, inside=7))
        code, _, err = _train(run, capsys)
    assert code == 2
    error_line(err, file, os.strerror(errno.ENOSPC), f"alfa train --resume {run}")
    assert not (run / ".lock").exists()

    # every record written before is there, whole; the log is a prefix of the uninterrupted one
    log, ref_log = (run / "metrics.jsonl").read_bytes(), (ref_run / "metrics.jsonl").read_bytes()
    assert log.endswith(b"\n") and ref_log.startswith(log)
    # every checkpoint written before loads and equals the uninterrupted run's
    kept = list_checkpoints(run / "checkpoints")
    for path in [*kept, run / "checkpoints" / "best.pt"]:
        if path.exists():
            mine = load_checkpoint(path)
            same = ref_run / "checkpoints" / path.name
            if path.name.startswith("step-") or mine["iteration"] == 20:
                assert_same(mine, load_checkpoint(same))
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]

    # with room again, the run resumes and ends exactly as the uninterrupted one
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--no-progress")
    assert code == 0, err
    final = "checkpoints/step-0000020.pt"
    assert_same(load_checkpoint(run / final), load_checkpoint(ref_run / final))
    assert read_metrics(run / "metrics.jsonl") == read_metrics(ref_run / "metrics.jsonl")


def test_a_refused_record_is_cut_back_out(tmp_path, monkeypatch):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"iteration": 1}\n')
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        with monkeypatch.context() as patch:
            FullDisk(patch, tmp_path, 5)
            with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
                append_record(fd, b'{"iteration": 2}\n')
        assert path.read_bytes() == b'{"iteration": 1}\n'  # the 5 bytes that fitted are gone
        append_record(fd, b'{"iteration": 3}\n')
    finally:
        os.close(fd)
    assert path.read_bytes() == b'{"iteration": 1}\n{"iteration": 3}\n'
