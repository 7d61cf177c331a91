"""Runs that travel: a run or export is tested and adapted with the test data alone, from any
folder, after being moved; the files shipped in the package hold no machine path."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from alfa.cli.main import main
from shared_paths import REAL_OMNIGLOT, REPO
from test_classification import _tiny, _write_folder_dataset


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("alfa: error: "), err
    return lines[0]


def _eval(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["eval", *args, "--tasks", "12", "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture
def relative_run(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A tiny folder-dataset run trained in ``tmp/work`` with class lists given relative to it
    (``train.txt``, ``test.txt``), as the shipped configs give theirs; (run, work folder)."""
    work = tmp_path / "work"
    data = _write_folder_dataset(work / "data")
    monkeypatch.chdir(work)
    args = _tiny(data, "data.split_file=train.txt", "data.test_split_file=test.txt")
    assert main(["train", *args, "--run-dir", "run", "--no-progress"]) == 0
    return work / "run", work


def test_a_run_keeps_a_copy_of_its_class_lists(relative_run):
    from alfa.runs.class_lists import FOLDER

    run, work = relative_run
    for split in ("train", "test"):
        copy = run / FOLDER / f"{split}.txt"
        assert copy.read_text() == (work / f"{split}.txt").read_text()
    assert not (run / FOLDER / "val.txt").exists()
    stored = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert (stored["split_file"], stored["test_split_file"]) == ("train.txt", "test.txt")


def test_a_moved_run_is_evaluated_and_plotted_from_another_folder(
    relative_run, tmp_path, capsys, monkeypatch
):
    run, work = relative_run
    before = _eval(capsys, str(run))
    moved = tmp_path / "elsewhere" / "moved-run"
    moved.parent.mkdir()
    shutil.move(run, moved)
    (work / "train.txt").unlink()  # the class lists the run was trained from are gone
    (work / "test.txt").unlink()
    monkeypatch.chdir(tmp_path / "elsewhere")
    after = _eval(capsys, str(moved))
    assert after["mean"] == before["mean"] and after["tasks"] == 12
    assert main(["plot", str(moved), "--tasks", "3"]) == 0
    assert (moved / "plots" / "curves.png").is_file()


def test_eval_reads_the_test_classes_from_test_root_without_the_training_data(
    relative_run, tmp_path, capsys, monkeypatch
):
    run, work = relative_run
    before = _eval(capsys, str(run))
    moved_data = tmp_path / "copy-of-data"
    shutil.move(work / "data", moved_data)  # data.root of the run is unreachable now
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(run), "--tasks", "12"]) == 2
    assert "dataset path not found" in _one_error(capsys)
    after = _eval(capsys, str(run), f"data.test_root={moved_data}")
    assert after["mean"] == before["mean"]
    # only the test classes are needed: the training classes can be gone too
    for c in range(5):
        shutil.rmtree(moved_data / f"class{c}")
    assert _eval(capsys, str(run), f"data.test_root={moved_data}")["mean"] == before["mean"]


def test_an_override_of_the_test_class_list_is_read_from_the_working_folder(relative_run, capsys):
    run, work = relative_run
    (work / "other.txt").write_text("class0\nclass1\nclass2\n")
    default = _eval(capsys, str(run))
    other = _eval(capsys, str(run), "data.test_split_file=other.txt")
    assert other["mean"] != default["mean"]
    (work / "other.txt").unlink()
    assert main(["eval", str(run), "data.test_split_file=other.txt"]) == 2
    assert "class list file not found" in _one_error(capsys)


def test_an_export_carries_the_class_lists(relative_run, tmp_path, capsys, monkeypatch):
    run, work = relative_run
    out = tmp_path / "model.safetensors"
    assert main(["export", str(run), "--to", str(out)]) == 0
    before = _eval(capsys, str(run))
    (work / "test.txt").unlink()
    monkeypatch.chdir(tmp_path)
    assert _eval(capsys, str(out))["mean"] == before["mean"]


def test_a_run_is_resumed_from_another_folder(relative_run, tmp_path, capsys, monkeypatch):
    run, work = relative_run
    (work / "train.txt").unlink()
    monkeypatch.chdir(tmp_path)
    args = ["train", "--resume", str(run), "train.iterations=6", "--no-progress"]
    assert main(args) == 0
    assert "finished 6 iterations" in capsys.readouterr().out


def test_a_new_run_refuses_an_unreadable_test_class_list_before_writing_a_run(
    tmp_path, capsys, monkeypatch
):
    data = _write_folder_dataset(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    args = _tiny(data, "data.test_split_file=missing.txt")
    assert main(["train", *args, "--run-dir", "run", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("alfa: error: data.test_split_file: class list file not found")
    assert not (tmp_path / "run" / "config.yaml").exists()


# --- no machine path in a shipped file ---------------------------------------------------------

_ABSOLUTE = re.compile(r"(?:^|[\s\"'=,\[(])((?:/(?!/)|~/|[A-Za-z]:[\\/])[^\s\"',]*)")


def _absolute_paths(value: Any) -> list[str]:
    """Every absolute path (``/x``, ``~/x``, ``C:\\x``) in a string, or in the strings of a JSON
    value (a metadata value holding JSON is searched inside)."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in _absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _absolute_paths(v)]
    if not isinstance(value, str):
        return []
    if value[:1] in "[{":
        try:
            return _absolute_paths(json.loads(value))
        except json.JSONDecodeError:
            pass
    return _ABSOLUTE.findall(value)


def _shipped_files() -> list[Path]:
    return sorted(p for p in (REPO / "src" / "alfa" / "resources").rglob("*") if p.is_file())


def _paths_in(path: Path) -> list[str]:
    raw = path.read_bytes()
    if path.suffix == ".safetensors":
        size = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + size])
        return _absolute_paths(header.get("__metadata__", {}))
    return _absolute_paths(raw.decode("utf-8"))


def test_the_detector_finds_the_paths_the_old_pretrained_files_held():
    old = {"config": json.dumps({"data": {"root": "/home/me/omniglot/a.zip,/home/me/b.zip"}})}
    assert _absolute_paths(old) == ["/home/me/omniglot/a.zip", "/home/me/b.zip"]
    assert _absolute_paths("root: C:\\data\\mini and ~/x") == ["C:\\data\\mini", "~/x"]
    portable = "${ALFA_DATA}/omniglot/a.zip,configs/omniglot/splits/x.txt https://a.org/b"
    assert _absolute_paths(portable) == []


@pytest.mark.parametrize("path", _shipped_files(), ids=lambda p: p.name)
def test_no_shipped_file_holds_an_absolute_path(path):
    assert _paths_in(path) == []


def test_the_shipped_configs_name_no_absolute_path():
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        assert _absolute_paths(yaml.safe_load(path.read_text())) == [], path


def test_a_pretrained_model_is_evaluated_with_only_alfa_data(tmp_path, capsys, monkeypatch):
    if not (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        pytest.skip("real Omniglot zips not available")
    monkeypatch.setenv("ALFA_DATA", str(REAL_OMNIGLOT.parent))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["eval", "--pretrained", "omniglot-5way", "--tasks", "4", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["tasks"] == 4
    # it was meta-trained on every alphabet, test ones included: eval says so
    assert "156 of the 156 test classes are also meta-training classes" in captured.err
    assert main(["eval", "--pretrained", "omniglot-5way", "--checkpoint", "last"]) == 2
    assert "--checkpoint selects a checkpoint of a run" in _one_error(capsys)
    assert main(["eval", "run", "--pretrained", "omniglot-5way"]) == 2
    assert "give either RUN or --pretrained NAME, not both" in _one_error(capsys)
    assert main(["eval"]) == 2
    assert "alfa eval needs RUN (a run directory or export) or --pretrained NAME" in (
        _one_error(capsys)
    )


# --- the whole journey, as a user does it ------------------------------------------------------


def _alfa(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "alfa", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, (args, out.stderr[-2000:])
    return out


def _support_and_queries(folder: Path, ways: int) -> tuple[Path, list[Path]]:
    """One drawing per character of the first ``ways`` Tagalog characters as the support set,
    the second drawing of each as a query, copied from the zips."""
    members: dict[str, list[str]] = {}
    archive = REAL_OMNIGLOT / "images_background_small2.zip"
    with zipfile.ZipFile(archive) as z:
        for name in sorted(z.namelist()):
            parts = name.split("/")
            if len(parts) == 4 and parts[1] == "Tagalog" and parts[3].endswith(".png"):
                members.setdefault(parts[2], []).append(name)
        support, queries = folder / "support", []
        for character in sorted(members)[:ways]:
            first, second = members[character][:2]
            (support / character).mkdir(parents=True)
            (support / character / "1.png").write_bytes(z.read(first))
            queries.append(folder / f"{character}.png")
            queries[-1].write_bytes(z.read(second))
    return support, queries


@pytest.mark.slow
def test_a_moved_omniglot_run_works_from_anywhere_with_only_alfa_data(tmp_path):
    """Train 50 iterations of the shipped 5-way config from the repository root, move the run,
    then eval, plot, export and adapt from another folder with only ALFA_DATA set."""
    if not (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        pytest.skip("real Omniglot zips not available")
    env = {
        "ALFA_DATA": str(REAL_OMNIGLOT.parent),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "OMP_NUM_THREADS": "1",
    }
    if os.environ.get("PYTHONPATH"):  # where the code under test is, when it is not installed
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    first = tmp_path / "first"
    config = "configs/omniglot/alfa_maml_5way_1shot.yaml"
    overrides = ["train.iterations=50", "train.checkpoint_every=50", "meta.batch_size=2"]
    _alfa(REPO, env, "train", config, *overrides, "--run-dir", str(first), "--no-progress")
    moved = tmp_path / "somewhere" / "else" / "omni"
    moved.parent.mkdir(parents=True)
    shutil.move(first, moved)
    cwd = tmp_path / "another"
    cwd.mkdir()
    result = _alfa(cwd, env, "eval", str(moved), "--tasks", "6", "eval.batch=6", "--json")
    assert json.loads(result.stdout.strip().splitlines()[-1])["tasks"] == 6
    plotted = _alfa(cwd, env, "plot", str(moved), "--tasks", "4").stdout.split()
    assert all(Path(p).is_file() for p in plotted) and len(plotted) == 3
    _alfa(cwd, env, "export", str(moved), "--to", "omni.safetensors")
    exported = _alfa(cwd, env, "eval", "omni.safetensors", "--tasks", "6", "eval.batch=6", "--json")
    assert json.loads(exported.stdout.strip().splitlines()[-1])["mean"] == pytest.approx(
        json.loads(result.stdout.strip().splitlines()[-1])["mean"]
    )
    support, queries = _support_and_queries(tmp_path / "images", 5)
    for model in (str(moved), "omni.safetensors"):
        adapted = _alfa(cwd, env, "adapt", model, str(support), *map(str, queries), "--json")
        predictions = json.loads(adapted.stdout.strip().splitlines()[-1])
        assert len(predictions) == 5
        assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-4 for p in predictions)
    assert (moved / "checkpoints" / "step-0000050.pt").is_file()
