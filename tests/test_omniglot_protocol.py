"""The Omniglot protocol (alfa.paper.omniglot_*): one config for every row but the rule, disjoint
splits, the paired statistics and verdicts, and a short end-to-end run on the real minimal sets
that is resumable, ships re-evaluable evidence and reports only what it ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alfa.cli.main import main
from alfa.config import config_to_dict, leaf_keys
from alfa.errors import DataError
from alfa.paper import omniglot_run
from alfa.paper.omniglot_cells import (
    CELLS,
    METHODS,
    RULES,
    SEEDS,
    VARIANTS,
    cell_key,
    last_validation,
    protocol_config,
)
from alfa.paper.omniglot_report import CLAIMS, markdown, verdicts
from alfa.paper.omniglot_run import _validation, report, run
from alfa.runs.evaluate import evaluate
from alfa.runs.reopen import load_run
from shared_paths import REAL_OMNIGLOT, REPO


def test_rows_differ_only_in_the_rule_and_the_initialisation():
    for ways in (20, 5):
        base = leaf_keys(config_to_dict(protocol_config(ways, "maml", 0)))
        for method in METHODS:
            other = leaf_keys(config_to_dict(protocol_config(ways, method, 0)))
            changed = {k for k in base.keys() | other.keys() if base.get(k) != other.get(k)}
            allowed = {k for k in changed if k.startswith("rule.")} | ({"name"} & changed)
            if method == "alfa_random":
                allowed.add("meta.init")
            assert changed == allowed, method
            assert ("name" in changed) == (method != "maml")
            assert other["meta.grad_clip"] == 1.0 and other["meta.first_order"] is False
    # seeds change only the seed and the name
    a = leaf_keys(config_to_dict(protocol_config(20, "alfa_maml", 0)))
    b = leaf_keys(config_to_dict(protocol_config(20, "alfa_maml", 2)))
    assert {k for k in a if a[k] != b[k]} == {"seed", "name"}


def test_the_stable_row_has_the_three_switches_and_random_init_the_official_decay():
    stable = protocol_config(20, "alfa_maml_stable").rule
    assert stable.state_encoding == "log_sign" and stable.generator_output == "bounded"
    assert stable.state_statistics == ("mean", "rms")
    random = protocol_config(5, "alfa_random")
    assert random.meta.init == "random" and random.rule.per_element_decay
    assert protocol_config(20, "alfa_maml").rule.state_encoding == "raw"


def test_validation_and_test_alphabets_are_disjoint_from_training():
    config = protocol_config(20, "maml")
    alphabets = {}
    for split in ("split_file", "val_split_file", "test_split_file"):
        lines = (REPO / getattr(config.data, split)).read_text().split()
        alphabets[split] = {line.split("/")[0] for line in lines}
    assert alphabets["val_split_file"] == {"Greek"}
    assert alphabets["test_split_file"] == {"Early_Aramaic", "Tagalog"}
    assert len(alphabets["split_file"]) == 5
    train, val, test = alphabets.values()
    assert not (train & val) and not (train & test) and not (val & test)


def test_a_partial_table_pairs_every_row_first():
    assert CELLS[: len(METHODS)] == [(20, m, 0) for m in METHODS]
    assert len(CELLS) == 2 * len(METHODS) * len(SEEDS)
    assert set(RULES) == set(METHODS)


def _pair(n: int, up: int, down: int) -> dict:
    return {
        "ways": 20,
        "a": "alfa_maml",
        "b": "maml",
        "per_seed": [{}] * n,
        "mean_over_seeds": 1.5,
        "seeds_a_better_beyond_ci": up,
        "seeds_b_better_beyond_ci": down,
    }


@pytest.mark.parametrize(
    ("n", "up", "down", "start"),
    [
        (3, 3, 0, "holds: better beyond the paired 95% CI in all 3 seeds ("),
        (2, 2, 0, "holds so far: better beyond the paired 95% CI in both seeds ("),
        (1, 1, 0, "holds so far: better beyond the paired 95% CI in the one seed run ("),
        (3, 0, 3, "fails:"),
        (3, 2, 0, "not shown: better beyond the CI in 2 and worse in 0 of 3 seeds"),
        (1, 0, 1, "fails so far:"),
        (2, 1, 0, "not shown so far: better beyond the CI in 1 and worse in 0 of 2 seeds"),
    ],
)
def test_a_claim_holds_only_when_every_seed_wins_beyond_the_ci(n, up, down, start):
    (claim1,) = [v for v in verdicts([_pair(n, up, down)]) if v["claim"] == CLAIMS[0][2]][:1]
    assert claim1["verdict"].startswith(start)
    untested = [v for v in verdicts([]) if v["ways"] == 5]
    assert all(v["verdict"].startswith("not tested yet") for v in untested)


def _strip(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    for key in ("source", "results", "command", "written_by"):
        doc.pop(key, None)
    for row in doc["rows"]:
        row.pop("train_seconds")
        row.pop("commit")
    return doc


@pytest.mark.slow
def test_a_short_run_is_resumable_ships_evidence_and_pairs_the_rows(tmp_path, capsys, monkeypatch):
    if not (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        pytest.skip("real Omniglot zips not available")
    monkeypatch.chdir(REPO)  # the class lists are relative to the repository
    only = ["20way-maml-s0", "20way-alfa_maml-s0"]
    kwargs = {"iterations": 2, "only": only, "tasks": 6, "data": str(REAL_OMNIGLOT)}
    writes = []  # the report is written once per finished cell, not again at the end
    write = omniglot_run._write
    monkeypatch.setattr(omniglot_run, "_write", lambda *a: writes.append(write(*a)))
    doc = run(tmp_path / "res", tmp_path / "runs", **kwargs)
    assert len(writes) == 2
    monkeypatch.setattr(omniglot_run, "_write", write)
    rows = {r["method"]: r for r in doc["rows"]}
    assert set(rows) == {"maml", "alfa_maml"}
    for r in rows.values():
        assert r["test_tasks"] == 6 and r["iterations"] == 2 and 0 < r["accuracy"] < 100
        assert r["best_val"] is not None and r["checkpoint_iteration"] in (1, 2)
        assert [p[0] for p in r["val_curve"]] == [1, 2]
    # the paired mean difference is the difference of the two accuracies (same episodes)
    pair = next(p for p in doc["paired"] if (p["a"], p["b"]) == ("alfa_maml", "maml"))
    want = rows["alfa_maml"]["accuracy"] - rows["maml"]["accuracy"]
    assert pair["per_seed"][0]["mean_diff"] == pytest.approx(want, abs=1e-6)  # 10-digit files
    # the shipped cell re-evaluates to its row
    cell = tmp_path / "res" / "omniglot_protocol" / "20way-alfa_maml-s0"
    assert (cell / "checkpoints" / "best.pt").is_file() and (cell / "class_lists").is_dir()
    config, learner, source, state = load_run(cell)
    assert state["iteration"] == rows["alfa_maml"]["checkpoint_iteration"]
    result = evaluate(learner, source, tasks=6, seed=config.eval.seed, batch=config.eval.batch)
    assert 100 * result["mean"] == pytest.approx(rows["alfa_maml"]["accuracy"], rel=1e-12)
    # a second call runs nothing; a cell of another budget is refused
    capsys.readouterr()
    again = run(tmp_path / "res", tmp_path / "runs", **kwargs)
    assert "2 cell(s) done, 0 to run" in capsys.readouterr().out
    assert _strip(again) == _strip(doc)
    with pytest.raises(Exception, match="another budget"):
        run(tmp_path / "res", tmp_path / "runs", **{**kwargs, "iterations": 3})
    # the report is a rendering of the JSON, and says which cells are missing
    md = (tmp_path / "res" / "omniglot_protocol.md").read_text()
    assert md == markdown(json.loads((tmp_path / "res" / "omniglot_protocol.json").read_text()))
    assert "2 of 30 cells done" in md and "20way-learned_fixed-s0" in md
    assert "holds so far" in md or "fails so far" in md or "not shown" in md
    assert "![validation curves" in md and "(omniglot_protocol.png)" in md
    assert (tmp_path / "res" / "omniglot_protocol.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = md
    report(tmp_path / "res", "python scripts/omniglot_protocol.py --report-only")
    after = (tmp_path / "res" / "omniglot_protocol.md").read_text()
    assert after.split("## Protocol")[1] == before.split("## Protocol")[1]
    # a report that cannot be made (a shipped cell's evidence moved away) loses no finished row
    evidence = cell.parent / "20way-maml-s0" / "per_task_accuracy.json"
    kept = evidence.read_bytes()
    evidence.unlink()
    capsys.readouterr()
    with pytest.raises(Exception, match=r"20way-maml-s0/per_task_accuracy\.json.*row is saved in"):
        run(tmp_path / "res", tmp_path / "runs", **{**kwargs, "only": ["20way-learned_fixed-s0"]})
    assert "the rows are saved in" in capsys.readouterr().err
    saved = json.loads((tmp_path / "res" / "omniglot_protocol.json").read_text())
    assert len(saved["rows"]) == 3 and "paired" not in saved and "summary" not in saved
    evidence.write_bytes(kept)
    mended = report(tmp_path / "res", "python scripts/omniglot_protocol.py --report-only")
    assert len(mended["rows"]) == 3 and any(p["b"] == "learned_fixed" for p in mended["paired"])


def _row(ways: int, method: str, seed: int, **extra) -> dict:
    curve = [[500 * k, 60.0 + 5 * k + seed] for k in (1, 2, 3)]
    row = {"ways": ways, "method": method, "seed": seed, "accuracy": 70.0 + seed, "ci95": 0.4}
    return {**row, "val_curve": curve, "checkpoint_iteration": 1000, **extra}


def test_the_figure_has_a_row_of_panels_for_each_number_of_ways_with_curves(tmp_path):
    from PIL import Image

    from alfa.paper.omniglot_figure import draw

    assert draw([{**_row(20, "maml", 0), "val_curve": []}], tmp_path / "none.png", "t") is None
    assert not (tmp_path / "none.png").exists()
    one = [_row(20, m, s) for m in METHODS for s in SEEDS]
    one.append(_row(20, "alfa_maml", 2, accuracy=None, diverged="non-finite loss"))
    both = [*one, _row(5, "maml", 0), _row(5, "alfa_maml", 0, checkpoint_iteration=7)]
    sizes = []
    for name, rows in (("one", one), ("both", both)):
        out = draw(rows, tmp_path / f"{name}.png", "title")
        assert out is not None and out.read_bytes()[:4] == b"\x89PNG"
        sizes.append(Image.open(out).size)
    (w1, h1), (w2, h2) = sizes
    assert w1 == w2 and h2 > 1.7 * h1  # a second row of panels, as tall as the first


def test_a_damaged_table_is_refused_in_one_line_and_kept(tmp_path, capsys):
    results = tmp_path / "res"
    results.mkdir()
    damaged = results / "omniglot_protocol.json"
    damaged.write_text('{"rows": [{"ways": 20, "method": "maml"}]}')
    code = main(["reproduce", "omniglot", "--results", str(results), "--report-only"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert str(damaged) in err and "seed" in err
    assert damaged.read_text() == '{"rows": [{"ways": 20, "method": "maml"}]}'


def test_an_unknown_cell_pattern_is_refused_with_an_example(capsys):
    code = main(
        ["reproduce", "omniglot", "--only", "20way-reptile-s0", "--results", "/nonexistent"]
    )
    err = capsys.readouterr().err
    assert code != 0 and "20way-reptile-s0" in err and cell_key(*CELLS[0]) in err


def test_the_claims_are_the_papers_three():
    assert [(a, b) for a, b, _ in CLAIMS] == [
        ("alfa_maml", "maml"),
        ("alfa_random", "maml"),
        ("alfa_maml", "learned_fixed"),
    ]
    assert Path(REPO / "scripts" / "omniglot_protocol.py").is_file()


def test_a_damaged_per_episode_file_is_named_in_the_error(tmp_path):
    from alfa.errors import AlfaError
    from alfa.paper.omniglot_report import paired_rows

    rows = [
        {"ways": 20, "method": m, "seed": 0, "accuracy": 50.0, "ci95": 1.0, "iterations": 2}
        for m in ("alfa_maml", "maml")
    ]
    for method, text in (("alfa_maml", "[0.5, 1.0]"), ("maml", '{"not": "a list"}')):
        cell = tmp_path / f"20way-{method}-s0"
        cell.mkdir()
        (cell / "per_task_accuracy.json").write_text(text)
    with pytest.raises(AlfaError, match=r"20way-maml-s0/per_task_accuracy\.json"):
        paired_rows(rows, tmp_path)
    (tmp_path / "20way-maml-s0" / "per_task_accuracy.json").write_text("[0.25, 1.0]")
    (pair, *_) = paired_rows(rows, tmp_path)
    assert pair["per_seed"][0]["mean_diff"] == pytest.approx(12.5)


def test_a_variant_changes_only_its_keys_and_the_name():
    for method in METHODS:
        base = leaf_keys(config_to_dict(protocol_config(20, method, 1)))
        jitter = leaf_keys(config_to_dict(protocol_config(20, method, 1, variant="jitter")))
        changed = {k for k in base if base[k] != jitter[k]}
        assert changed == {"name", *(f"data.{k}" for k in VARIANTS["jitter"]["data"])}
        assert jitter["name"] == f"20way-{method}-s1+jitter"
    with pytest.raises(Exception, match="unknown variant 'blur'; the variants are jitter"):
        protocol_config(20, "maml", variant="blur")


@pytest.mark.slow
def test_a_variant_is_its_own_table_compared_cell_by_cell_with_the_protocol(
    tmp_path, capsys, monkeypatch
):
    if not (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        pytest.skip("real Omniglot zips not available")
    monkeypatch.chdir(REPO)
    res = tmp_path / "res"
    kwargs = {"iterations": 2, "only": ["20way-maml-s0"], "tasks": 6, "data": str(REAL_OMNIGLOT)}
    # before the protocol's cell exists, the variant's cell has nothing to be compared with
    early = run(res, tmp_path / "runs", variant="jitter", **kwargs)
    assert early["against_protocol"][0]["test"] is None
    assert (
        "No cell of the variant has a protocol cell"
        in (res / "omniglot_protocol_jitter.md").read_text()
    )
    base = run(res, tmp_path / "runs", **kwargs)
    assert (tmp_path / "runs" / "20way-maml-s0+jitter-2").is_dir()
    assert (res / "omniglot_protocol_jitter" / "20way-maml-s0" / "checkpoints").is_dir()
    assert not (res / "omniglot_protocol.json").read_text().count("jitter")
    # the report compares the two cells: the paired difference is that of the accuracies
    report(res, "python scripts/omniglot_protocol.py --report-only --variant jitter", "jitter")
    doc = json.loads((res / "omniglot_protocol_jitter.json").read_text())
    (entry,) = doc["against_protocol"]
    want = doc["rows"][0]["accuracy"] - base["rows"][0]["accuracy"]
    assert entry["test"]["mean_diff"] == pytest.approx(want, abs=1e-6)
    assert entry["protocol_best_val"] == base["rows"][0]["best_val"]
    md = (res / "omniglot_protocol_jitter.md").read_text()
    assert md == markdown(doc)
    assert "variant `jitter`" in md and "`data.jitter_degrees: 10.0`" in md
    assert "## Against the protocol" in md and "1 cell(s) run with the variant" in md
    # the command line names the variant, and refuses one that does not exist
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "omniglot", "--results", str(res), "--report-only", "--variant", "x"])
    assert exit_info.value.code == 2 and "invalid choice: 'x'" in capsys.readouterr().err


def _table(rows: list[dict]) -> dict:
    """A table document of ``rows`` without paired comparisons, as the report reads it."""
    from alfa.paper.omniglot_report import summaries

    return {
        "rows": rows,
        "summary": summaries(rows),
        "paired": [],
        "cells": [],
        "written_by": "w",
        "command": "c",
        "results": "results",
        "source": {"commit": "x"},
    }


def test_a_resumed_cell_counts_the_recorded_time_of_its_parts(tmp_path):
    from alfa.paper.provenance import run_time

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    one = {"train_seconds": 3600.0, "train_parts": 1}  # a row from before the time was recorded
    two = {"train_seconds": 3600.0, "train_parts": 2}
    assert run_time(run_dir, 3600.0) == {  # a run from before provenance files
        **one,
        "train_seconds_measured": 0.0,
        "train_parts_unmeasured": 1,
    }
    killed = '{"started": "2026-12-06T10:31:46Z", "command": "x"}\n'
    ended = '{"started": "2026-12-06T11:31:46Z", "command": "x", "train_seconds": 1800.0}\n'
    (run_dir / "provenance.jsonl").write_text(killed + ended)
    partial = run_time(run_dir, 600.0)
    assert partial == {
        "train_seconds": 600.0,
        "train_parts": 2,
        "train_seconds_measured": 1800.0,
        "train_parts_unmeasured": 1,
    }
    (run_dir / "provenance.jsonl").write_text(ended * 2)
    whole = run_time(run_dir, 600.0)
    rows = [
        {
            "ways": 20,
            "method": m,
            "seed": 0,
            "accuracy": 80.0,
            "ci95": 0.4,
            "iterations": 6000,
            "checkpoint_iteration": 6000,
            "best_val": 79.0,
            **time,
        }
        for m, time in (
            ("maml", one),
            ("alfa_maml", two),
            ("learned_fixed", partial),
            ("alfa_random", whole),
        )
    ]
    md = markdown(_table(rows))
    assert "| 60 min |" in md  # one process trained it: its time is the run's
    assert "| at least 60 (2 parts) min |" in md  # of the last process alone
    assert "| at least 30 (2 parts) min |" in md  # what the parts recorded
    assert "| 60 (2 parts) min |" in md  # every part recorded its time
    assert "at least 3.5 CPU-hours" in md and "2 cell(s) stopped and resumed" in md
    rows[1:3] = []
    assert "at least" not in markdown(_table(rows))


def test_rows_tested_at_the_budgets_last_checkpoint_are_named_as_perhaps_still_improving():
    rows = [
        {
            "ways": 20,
            "method": m,
            "seed": seed,
            "accuracy": 80.0,
            "ci95": 0.4,
            "iterations": 6000,
            "checkpoint_iteration": at,
            "best_val": 79.0,
            "train_seconds": 60.0,
        }
        for m, seed, at in (("maml", 0, 6000), ("maml", 1, 5500), ("alfa_maml", 0, 4500))
    ]
    md = markdown(_table(rows))
    assert "last checkpoint in 1 of 3 tested cells (MAML 1 of 2): those runs may" in md
    rows[0]["checkpoint_iteration"] = 5000
    md = markdown(_table(rows))
    assert "last checkpoint in 0 of 3 tested cells." in md and "may still" not in md
    # 10,000 meta-iterations validate every 833: the last validation is at 9,996
    rows[0].update(ways=5, iterations=10000, checkpoint_iteration=9996)
    md = markdown(_table(rows))
    assert "5-way: the best validation accuracy came at the last checkpoint in 1 of 1" in md
    config = protocol_config(5, "maml", 0)
    assert config.train.val_every == 833 and last_validation(10000) == 9996 == 12 * 833


def test_a_cells_validation_curve_is_read_through_the_checked_metrics_reader(tmp_path):
    lines = [
        {"iteration": 1, "split": "train", "accuracy": 0.5},
        {"iteration": 2, "split": "val", "accuracy": 0.625},
        {"iteration": 4, "split": "val", "accuracy": 0.75},
    ]
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"iteration": 5, "spl')
    assert _validation(tmp_path) == {"val_curve": [[2, 62.5], [4, 75.0]], "best_val": 75.0}
    log.write_text("[1, 2]\n" + json.dumps(lines[1]) + "\n")  # not a record: named, no crash
    with pytest.raises(DataError, match=r"metrics\.jsonl' line 1 is not a metrics record"):
        _validation(tmp_path)


def test_the_accuracy_table_shows_each_seeds_best_validation_beside_the_mean():
    rows = [
        {
            "ways": 20,
            "method": "maml",
            "seed": seed,
            "accuracy": 80.0,
            "ci95": 0.4,
            "iterations": 6000,
            "checkpoint_iteration": 5000,
            "best_val": val,
            "train_seconds": 60.0,
        }
        for seed, val in ((0, 79.0), (1, 80.5), (2, None))
    ]
    md = markdown(_table(rows))
    assert "| 79.75 (79.00, 80.50, -) | 5000, 5000, 5000 |" in md
