"""Answers that were silent or misleading: a folder without images, a ``file_pattern`` that
reads another folder's records, a process of a job that fails before any run directory exists.
(The others of this group are in the modules beside this one: ``alfa train /dev/zero`` and a
pipe in ``test_hostile_config``; a 72-megapixel record in ``test_hostile_readers``; integer
weights, a split file that is any file, preprocessing that disagrees or is missing, and the
last good checkpoint of a real divergence in ``test_hostile_exports``.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from crafted import metadataset_source, tfrecord_frame
from hostile_conftest import Case, check

from alfa.runs.distributed import PeerError, _collective


def _text_files(folder: Path) -> dict[str, Any]:
    root = folder / "notes"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / "readme.txt").write_text("not an image\n")
    (root / "index.txt").write_text("nothing\n")
    return {"argv": ["data", "check", str(root)]}


def _pattern(pattern: str):
    def build(folder: Path) -> dict[str, Any]:
        good = metadataset_source(folder / "records" / "good", tfrecord_frame(3))
        source = metadataset_source(folder / "records" / "crafted", b"")
        spec = json.loads((source / "dataset_spec.json").read_text())
        spec["file_pattern"] = pattern
        (source / "dataset_spec.json").write_text(json.dumps(spec))
        (good / "dataset_spec.json").unlink()  # only the crafted source is a source
        return {"argv": ["data", "check", str(folder / "records")]}

    return build


CASES: dict[str, Case] = {
    "a folder of .txt files": Case(_text_files, ("notes", "holds no images", "index.txt")),
    "file_pattern ../good/{}.tfrecords": Case(
        _pattern("../good/{}.tfrecords"), ("dataset_spec.json", "outside the source folder")
    ),
    "file_pattern /etc/{}": Case(
        _pattern("/etc/{}"), ("dataset_spec.json", "outside the source folder")
    ),
}
CASES["a folder of .txt files"].kind = "report"
CASES["file_pattern ../good/{}.tfrecords"].kind = "report"
CASES["file_pattern /etc/{}"].kind = "report"


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_silent(hostile, name):
    check(CASES[name], hostile[name])


def test_a_failed_collective_before_training_does_not_offer_a_resume():
    """A process that loses its peers while the job starts (rank 0 sharing the config, before
    any run directory exists) says so; only a collective of the training loop says how to
    resume."""
    with pytest.raises(PeerError) as starting, _collective("waiting for rank 0"):
        raise RuntimeError("Connection closed by peer")
    assert "waiting for rank 0 failed" in str(starting.value)
    assert "resume" not in str(starting.value) and "checkpoint" not in str(starting.value)
    with (
        pytest.raises(PeerError) as training,
        _collective("averaging the meta-gradients", training=True),
    ):
        raise RuntimeError("Connection closed by peer")
    assert "alfa train --resume RUN_DIR" in str(training.value)
