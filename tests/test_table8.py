"""Table 8 (src/alfa/paper/table8_cells.py, table8_run.py): recipe, paired statistics, shipped
evidence."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from alfa.config import config_to_dict, leaf_keys, load_config
from alfa.paper.table8_cells import (
    ADAPTIVITY,
    CELLS,
    MAIN,
    RULES,
    cell_key,
    controlled_config,
    row_key,
)
from alfa.paper.table8_report import paired
from alfa.paper.table8_run import run
from alfa.runs.evaluate import evaluate
from alfa.runs.reopen import changed_keys, load_run, resumable

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_row_key_names_the_cell_of_a_table_row():
    """A row of table8.json is keyed by the same name as its cell's run folder."""
    row = {"net": "40x3", "shots": 10, "method": "alfa_maml", "seed": 2, "mse": 0.5}
    assert row_key(row) == cell_key("40x3", 10, "alfa_maml", 2) == "40x3-k10-alfa_maml-s2"
    assert {
        row_key(dict(zip(("net", "shots", "method", "seed"), c, strict=True))) for c in CELLS
    } == {cell_key(*c) for c in CELLS}


def test_controlled_rows_differ_only_in_the_rule():
    """Every main row has the same outer optimiser and clip; only rule.* (and the name) differ."""
    base = leaf_keys(config_to_dict(controlled_config("40x2", 5, "maml", 0)))
    assert base["meta.grad_clip"] == 1.0
    for method in MAIN:
        flat = leaf_keys(config_to_dict(controlled_config("40x2", 5, method, 0)))
        changed = {k for k in flat if flat[k] != base[k]}
        assert changed <= {"name"} | {k for k in flat if k.startswith("rule.")}, changed
    fixed = controlled_config("40x2", 5, "learned_fixed", 0).rule
    assert fixed.name == "learned_fixed" and fixed.per_step and fixed.per_layer
    assert fixed.learn_alpha and fixed.learn_beta
    assert controlled_config("40x2", 5, "alfa_maml_official", 0).rule.generator_init == "official"
    # the ablation drops the clip and nothing else
    noclip = leaf_keys(config_to_dict(controlled_config("40x2", 5, "alfa_maml_noclip", 2)))
    clip = leaf_keys(config_to_dict(controlled_config("40x2", 5, "alfa_maml", 2)))
    assert {k for k in clip if clip[k] != noclip[k]} == {"name", "meta.grad_clip"}
    assert noclip["meta.grad_clip"] == 0.0
    # seeds change the training seed only, never the fixed validation and test tasks
    s1 = leaf_keys(config_to_dict(controlled_config("40x2", 5, "maml", 1)))
    assert {k for k in s1 if s1[k] != base[k]} == {"name", "seed"}


@pytest.mark.parametrize("method", ADAPTIVITY)
def test_generator_switch_rows_differ_from_their_base_only_in_the_switch(method):
    base = "alfa_maml_official" if "official" in method else "alfa_maml"
    a = leaf_keys(config_to_dict(controlled_config("80x3", 5, method, 1)))
    b = leaf_keys(config_to_dict(controlled_config("80x3", 5, base, 1)))
    # rule.generator records which mix of the switches a config has (stable, or custom)
    changed = {k for k in a if a[k] != b[k]} - {"name", "rule.generator"}
    expected = {f"rule.{k}" for k in RULES[method]} - {f"rule.{k}" for k in RULES[base]}
    switches = {"rule.generator_output", "rule.state_encoding", "rule.state_statistics"}
    assert changed == expected and changed <= switches


def test_every_cell_of_the_paper_has_the_main_rows_with_three_seeds():
    for net in ("40x2", "80x3"):
        for shots in (5, 10, 20):
            got = {(m, s) for n, k, m, s in CELLS if (n, k) == (net, shots) and m in MAIN}
            assert got == {(m, s) for m in MAIN for s in (0, 1, 2)}
            config = controlled_config(net, shots, "maml", 0)
            assert config.data.shots == shots and config.meta.grad_clip == 1.0


def test_shipped_cells_were_trained_with_the_recipe_configs():
    """Each shipped cell's config.yaml is the recipe's config for that cell, and its row in
    results/table8.json names the same cell: the evidence is what the table says it is."""
    rows = json.loads((RESULTS / "table8.json").read_text())["rows"]
    assert rows
    for row in rows:
        key = f"{row['net']}-k{row['shots']}-{row['method']}-s{row['seed']}"
        shipped = load_config(RESULTS / "table8" / key / "config.yaml")
        want = controlled_config(row["net"], row["shots"], row["method"], row["seed"])
        # keys that change how fast a run computes, not what it learns, may differ (the cells
        # were written when data.workers defaulted to 0)
        changed = changed_keys(config_to_dict(shipped), want)
        assert [k for k in changed if not resumable(k)] == [], key


def test_paired_difference_is_the_mean_of_per_task_differences():
    a, b = [1.0, 2.0, 4.0, 3.0], [0.5, 2.5, 3.0, 3.0]
    p = paired(a, b)
    assert p["mean_diff"] == pytest.approx(0.25)
    diffs = [0.5, -0.5, 1.0, 0.0]
    std = math.sqrt(sum((d - 0.25) ** 2 for d in diffs) / 4)
    assert p["ci95"] == pytest.approx(1.96 * std / 2)


def _strip(doc):
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in doc["rows"]]


def test_recipe_end_to_end_is_deterministic_and_resumable(tmp_path, capsys):
    """Two runs give the same rows, whether the cells run in this process or two at a time in
    worker processes."""
    only = ["40x2-k5-maml-s0", "40x2-k5-learned_fixed-s0", "40x2-k5-alfa_maml-s0"]
    docs = [
        run(tmp_path / f"res{i}", tmp_path / f"runs{i}", iterations=4, only=only, tasks=40, jobs=j)
        for i, j in ((0, 1), (1, 2))
    ]
    assert _strip(docs[0]) == _strip(docs[1])
    assert [r["method"] for r in docs[0]["rows"]] == ["maml", "learned_fixed", "alfa_maml"]
    rows = {r["method"]: r for r in docs[0]["rows"]}
    for r in rows.values():
        assert r["grad_clip"] == 1.0 and r["test_tasks"] == 40 and r["checkpoint_iteration"] >= 1
    # the paired mean difference equals the difference of the rows' means (same tasks)
    pair = next(p for p in docs[0]["paired"] if (p["a"], p["b"]) == ("alfa_maml", "maml"))
    want = rows["alfa_maml"]["mse"] - rows["maml"]["mse"]
    assert pair["per_seed"][0]["mean_diff"] == pytest.approx(want, abs=1e-9)
    # evidence shipped and re-evaluable; per-task MSEs identical across the two runs
    cell = tmp_path / "res0" / "table8" / "40x2-k5-alfa_maml-s0"
    assert (cell / "checkpoints" / "best.pt").is_file() and (cell / "metrics.jsonl").is_file()
    again = tmp_path / "res1" / "table8" / "40x2-k5-alfa_maml-s0"
    assert (cell / "per_task_mse.json").read_text() == (again / "per_task_mse.json").read_text()
    config, learner, source, _ = load_run(cell)
    result = evaluate(learner, source, tasks=40, seed=config.eval.seed, batch=config.eval.batch)
    assert result["mean"] == pytest.approx(rows["alfa_maml"]["mse"], rel=1e-12)
    # a second call with the same budget runs nothing and keeps the rows
    capsys.readouterr()
    third = run(tmp_path / "res0", tmp_path / "runs0", iterations=4, only=only, tasks=40)
    assert "3 cell(s) done, 0 to run" in capsys.readouterr().out
    assert _strip(third) == _strip(docs[0])
    md = (tmp_path / "res0" / "table8.md").read_text()
    assert "Verdict" in md and "alfa_maml | learned_fixed" in md


def test_cells_start_with_the_40x2_five_shot_main_rows():
    first = [(n, k, m, s) for n, k, m, s in CELLS[: 3 * len(MAIN)]]
    assert {(n, k) for n, k, _, _ in first} == {("40x2", 5)}
    assert {m for _, _, m, _ in first} == set(MAIN)


def test_the_report_text_follows_its_numbers_and_options():
    """table8.md says the test tasks, the comparison with the paper's MAML and the results
    folder of this table, not those of the shipped one."""
    from alfa.paper.table8_cells import PAPER_TABLE8
    from alfa.paper.table8_report import markdown, summaries

    paper_maml = PAPER_TABLE8[("40x2", 5)]["maml"][0]
    rows = [
        {
            "net": "40x2",
            "shots": 5,
            "method": method,
            "seed": 0,
            "mse": mse,
            "ci95": 0.01,
            "test_tasks": 50,
            "eval_seed": 7,
            "iterations": 4,
            "checkpoint_iteration": 4,
            "commit": "0" * 40,
        }
        for method, mse in (("maml", 0.8 * paper_maml), ("alfa_maml", 0.3 * paper_maml))
    ]
    doc = {
        "rows": rows,
        "summary": summaries(rows),
        "paired": [],
        "iterations": 4,
        "command": "alfa reproduce table8 --tasks 50",
        "results": "runs/mine",
        "source": {"commit": "0" * 40},
    }
    text = markdown(doc)
    assert "the same 50 fixed test tasks (seed 7)" in text
    assert "sqrt(50)" in text and "(same 50 test tasks)" in text
    assert "600" not in text
    assert "our MAML MSE is 0.80 times its" in text and "about half" not in text
    assert "`alfa eval runs/mine/table8/<cell>`" in text
    assert "results/table8" not in text
