"""The results files: every one is written by a script that scripts/reproduce_results.sh runs,
records its commit and command, and comes out the same twice; shipped checkpoints re-evaluate
to the shipped numbers."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from alfa.cli.main import main
from shared_paths import REAL_OMNIGLOT

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
SCRIPT = REPO / "scripts" / "reproduce_results.sh"

# Every entry of results/ and the script that writes it.
WRITERS = {
    "table8.md": "scripts/table8.py",
    "table8.json": "scripts/table8.py",
    "table8": "scripts/table8.py",
    "omniglot_minimal.md": "scripts/omniglot_minimal.py",
    "omniglot_minimal.json": "scripts/omniglot_minimal.py",
    "clip_frequency.json": "scripts/clip_frequency.py",
    "adaptivity.md": "scripts/adaptivity.py",
    "adaptivity.json": "scripts/adaptivity.py",
    "adaptivity.png": "scripts/adaptivity.py",
    "metadataset_omniglot_minimal.md": "scripts/metadataset_omniglot_minimal.py",
    "metadataset_omniglot_minimal.json": "scripts/metadataset_omniglot_minimal.py",
    "omniglot_protocol.md": "scripts/omniglot_protocol.py",
    "omniglot_protocol.json": "scripts/omniglot_protocol.py",
    "omniglot_protocol.png": "scripts/omniglot_protocol.py",
    "omniglot_protocol": "scripts/omniglot_protocol.py",
    "omniglot_protocol_jitter.md": "scripts/omniglot_protocol.py",
    "omniglot_protocol_jitter.json": "scripts/omniglot_protocol.py",
    "omniglot_protocol_jitter.png": "scripts/omniglot_protocol.py",
    "omniglot_protocol_jitter": "scripts/omniglot_protocol.py",
    "pretrained_omniglot.md": "scripts/pretrained_omniglot.py",
    "pretrained_omniglot.json": "scripts/pretrained_omniglot.py",
    "pretrained_omniglot": "scripts/pretrained_omniglot.py",
}
# "started", "ended": a run's provenance line; "train_seconds_measured": the sum of its lines'
TIMING = {"train_seconds", "seconds", "started", "ended", "train_seconds_measured"}


def test_every_results_file_has_a_writer_that_the_one_command_runs():
    assert {p.name for p in RESULTS.iterdir()} == set(WRITERS)
    quick, full = SCRIPT.read_text().split("if (( quick )); then", 1)[1].split("\nelse\n", 1)
    for writer in set(WRITERS.values()):
        for branch in (quick, full):  # the --quick run and the full one
            assert re.search(rf'"\$py" {re.escape(writer)} ', branch), writer


def test_every_results_file_records_its_commit_and_command():
    table8 = json.loads((RESULTS / "table8.json").read_text())
    omniglot = json.loads((RESULTS / "omniglot_minimal.json").read_text())
    clip = json.loads((RESULTS / "clip_frequency.json").read_text())
    adaptivity = json.loads((RESULTS / "adaptivity.json").read_text())
    metadataset = json.loads((RESULTS / "metadataset_omniglot_minimal.json").read_text())
    protocol = json.loads((RESULTS / "omniglot_protocol.json").read_text())
    assert all(re.fullmatch(r"[0-9a-f]{40}", r["commit"]) for r in protocol["rows"])
    for doc, script in (
        (table8, "table8.py"),
        (protocol, "omniglot_protocol.py"),
        (omniglot, "omniglot_minimal.py"),
        (metadataset, "metadataset_omniglot_minimal.py"),
    ):
        assert doc["command"].startswith(f"python scripts/{script}")
        assert re.fullmatch(r"[0-9a-f]{40}", doc["source"]["commit"])
    assert all(re.fullmatch(r"[0-9a-f]{40}", r["commit"]) for r in table8["rows"])
    assert clip["command"].startswith("python scripts/clip_frequency.py")
    assert adaptivity["command"] == "python scripts/adaptivity.py"
    assert adaptivity["table8_source"] == table8["source"]
    md = (RESULTS / "adaptivity.md").read_text()
    assert adaptivity["source"]["commit"] in md and table8["source"]["commit"] in md
    assert re.fullmatch(r"[0-9a-f]{40}", clip["commit"])
    pretrained = json.loads((RESULTS / "pretrained_omniglot.json").read_text())
    for model in pretrained["models"]:
        assert model["command"].startswith("python scripts/pretrained_omniglot.py")
        assert re.fullmatch(r"[0-9a-f]{40}", model["source"]["commit"])
    # The runs behind the Meta-Dataset results: their commit, and each run's command.
    assert re.fullmatch(r"[0-9a-f]{40}", metadataset["runs_source"]["commit"])
    assert all(
        r["command"].startswith("python -m alfa.paper.metadataset_run --config ")
        for r in metadataset["runs"].values()
    )
    for name, doc in (
        ("table8.md", table8),
        ("omniglot_protocol.md", protocol),
        ("omniglot_minimal.md", omniglot),
        ("metadataset_omniglot_minimal.md", metadataset),
    ):
        md = (RESULTS / name).read_text()
        assert f"`{doc['command']}`" in md and doc["source"]["commit"] in md
    md = (RESULTS / "metadataset_omniglot_minimal.md").read_text()
    assert metadataset["runs_source"]["commit"] in md
    assert all(r["command"] in md for r in metadataset["runs"].values())


def test_every_shipped_protocol_cell_says_which_processes_trained_it():
    for name in ("omniglot_protocol", "omniglot_protocol_jitter"):
        doc = json.loads((RESULTS / f"{name}.json").read_text())
        for row in doc["rows"]:
            cell = RESULTS / name / f"{row['ways']}way-{row['method']}-s{row['seed']}"
            lines = (cell / "provenance.jsonl").read_text().splitlines()
            records = [json.loads(x) for x in lines]
            assert len(records) == row["train_parts"], cell
            for record in records:
                assert re.fullmatch(r"[0-9a-f]{40}", record["commit"]), cell
                assert record["command"].startswith("python scripts/omniglot_protocol.py"), cell


def test_the_metadataset_page_is_the_script_s_rendering_of_its_json():
    """No hand edits: the .md is what scripts/metadataset_report.py makes of the .json, and the
    paired differences are the per-episode differences' mean."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from metadataset_report import markdown
    finally:
        sys.path.remove(str(REPO / "scripts"))
    doc = json.loads((RESULTS / "metadataset_omniglot_minimal.json").read_text())
    assert (RESULTS / "metadataset_omniglot_minimal.md").read_text() == markdown(doc)
    for pair in doc["paired"].values():
        base = doc["runs"][pair["base"]]["episode_accuracies"]
        alfa = doc["runs"][pair["alfa"]]["episode_accuracies"]
        diff = [b - a for a, b in zip(base, alfa, strict=True)]
        assert pair["mean"] == pytest.approx(statistics.fmean(diff), abs=1e-9)
        assert pair["ci95"] == pytest.approx(1.96 * statistics.stdev(diff) / len(diff) ** 0.5)
        assert pair["alfa_better"] == sum(d > 0 for d in diff)


def _without_timing(value, root: str):
    if isinstance(value, dict):
        return {k: _without_timing(v, root) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_without_timing(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<out>")
    return value


def _snapshot(out: Path) -> dict[str, object]:
    """Every file the quick run wrote, timing fields dropped and its own folder masked."""
    files: dict[str, object] = {}
    for path in sorted((out / "results").rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(out / "results"))
        if path.suffix == ".json":
            files[rel] = _without_timing(json.loads(path.read_text()), str(out))
        elif path.suffix == ".md":
            text = re.sub(r"\| [0-9.]+ min \|", "| - min |", path.read_text())
            text = re.sub(r"\| [0-9]+ s \|", "| - s |", text)
            files[rel] = text.replace(str(out), "<out>")
        elif path.suffix in (".yaml", ".jsonl"):
            lines = path.read_text().splitlines()
            files[rel] = (
                [_without_timing(json.loads(x), str(out)) for x in lines]
                if (path.suffix == ".jsonl")
                else lines
            )
        else:
            files[rel] = path.stat().st_size > 0
    return files


@pytest.mark.slow
def test_the_quick_run_of_every_results_script_is_deterministic(tmp_path):
    if not (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        pytest.skip("real Omniglot zips not available")
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONPATH": str(REPO / "src"),
        "OMNIGLOT_DATA": str(REAL_OMNIGLOT),
        "OMP_NUM_THREADS": "1",
    }
    shots = []
    for name in ("a", "b"):
        out = tmp_path / name
        done = subprocess.run(
            ["bash", str(SCRIPT), "--quick", str(out)], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        shots.append(_snapshot(out))
        shutil.rmtree(out / "runs")
    first, second = shots
    assert set(first) == set(second)
    assert {
        "table8.md",
        "table8.json",
        "omniglot_minimal.md",
        "clip_frequency.json",
        "adaptivity.md",
        "adaptivity.json",
        "metadataset_omniglot_minimal.md",
        "metadataset_omniglot_minimal.json",
        "omniglot_protocol.md",
        "omniglot_protocol.json",
    } <= set(first)
    for key in first:
        assert first[key] == second[key], key
    # ... and the quick run is a real one: every script left numbers behind.
    assert all(r["mse"] > 0 for r in first["table8.json"]["rows"])
    assert 0.2 < first["omniglot_minimal.json"]["rows"][0]["accuracy"] < 1
    assert first["clip_frequency.json"]["rows"]["alfa_maml"]["iterations"] == 3
    (diagnosed,) = first["adaptivity.json"]["diagnostics"]
    assert diagnosed["tasks"] == 20 and diagnosed["method"] == "alfa_maml"
    metadataset = first["metadataset_omniglot_minimal.json"]
    assert [r["iterations"] for r in metadataset["runs"].values()] == [2] * 4
    assert all(len(r["episode_accuracies"]) == 5 for r in metadataset["runs"].values())
    assert all(0 < r["accuracy"] < 100 for r in metadataset["runs"].values())
    protocol = first["omniglot_protocol.json"]
    assert [(r["ways"], r["method"]) for r in protocol["rows"]] == [(5, "maml"), (5, "alfa_maml")]
    assert all(0 < r["accuracy"] < 100 and r["test_tasks"] == 5 for r in protocol["rows"])
    (jittered,) = first["omniglot_protocol_jitter.json"]["rows"]
    assert (jittered["ways"], jittered["method"], jittered["seed"]) == (5, "alfa_maml", 0)
    (model,) = first["pretrained_omniglot.json"]["models"]
    assert (model["ways"], model["method"], model["variant"]) == (5, "alfa_maml", "jitter")
    assert model["iterations"] == jittered["checkpoint_iteration"]  # the budget it chose
    assert 0 < model["test"]["mean"] < 1 and model["test"]["tasks"] == 5


def test_alfa_eval_of_a_shipped_checkpoint_prints_the_shipped_number(capsys):
    """`alfa eval` on one shipped Table 8 cell gives the JSON's MSE and CI as the table prints
    them (three decimals), at the recorded checkpoint iteration."""
    doc = json.loads((RESULTS / "table8.json").read_text())
    row = next(
        r for r in doc["rows"] if (r["net"], r["method"], r["seed"]) == ("40x2", "alfa_maml", 1)
    )
    cell = RESULTS / "table8" / f"{row['net']}-k{row['shots']}-{row['method']}-s{row['seed']}"
    capsys.readouterr()
    assert main(["eval", str(cell), "--tasks", str(row["test_tasks"]), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["iteration"] == row["checkpoint_iteration"]
    assert printed["tasks"] == row["test_tasks"] == 600
    assert f"{printed['mean']:.3f} +- {printed['ci95']:.3f}" == (
        f"{row['mse']:.3f} +- {row['ci95']:.3f}"
    )
    assert f"| 40x2 | 5 | alfa_maml | 1 | {row['mse']:.3f} +- {row['ci95']:.3f} |" in (
        (RESULTS / "table8.md").read_text()
    )


def test_alfa_eval_of_a_shipped_omniglot_protocol_cell_repeats_its_episodes(capsys, monkeypatch):
    """`alfa eval` of a shipped protocol cell on its first 20 test episodes gives the mean of
    the cell's first 20 shipped per-episode accuracies (episode i depends only on the seed and
    i), at the recorded checkpoint, with only ALFA_DATA set."""
    if not (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        pytest.skip("real Omniglot zips not available")
    monkeypatch.setenv("ALFA_DATA", str(REAL_OMNIGLOT.parent))
    doc = json.loads((RESULTS / "omniglot_protocol.json").read_text())
    row = next(r for r in doc["rows"] if r["accuracy"] is not None)
    cell = RESULTS / "omniglot_protocol" / f"{row['ways']}way-{row['method']}-s{row['seed']}"
    shipped = json.loads((cell / "per_task_accuracy.json").read_text())
    assert len(shipped) == row["test_tasks"] == 600
    assert statistics.fmean(shipped) * 100 == pytest.approx(row["accuracy"], abs=1e-6)
    capsys.readouterr()
    assert main(["eval", str(cell), "--tasks", "20", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["iteration"] == row["checkpoint_iteration"]
    assert printed["mean"] == pytest.approx(statistics.fmean(shipped[:20]), abs=1e-6)
