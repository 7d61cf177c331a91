"""Shipped configs and the Table 8 recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alfa.cli import main
from alfa.config import load_config
from alfa.reproduce import METHODS, PAPER_TABLE8, table8_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("net, shots", sorted(PAPER_TABLE8))
@pytest.mark.parametrize("method", METHODS)
def test_shipped_sinusoid_configs_match_the_recipe(net, shots, method):
    shipped = load_config(CONFIGS / "sinusoid" / f"{method}_k{shots}_{net}.yaml")
    assert shipped == table8_config(net, shots, method)


def test_default_sinusoid_configs_are_five_shot_40x2():
    for method in METHODS:
        shipped = load_config(CONFIGS / "sinusoid" / f"{method}.yaml")
        assert shipped == table8_config("40x2", 5, method)
        assert shipped.data.shots == 5 and shipped.model.hidden == (40, 40)


def test_every_shipped_config_loads():
    paths = sorted(CONFIGS.rglob("*.yaml"))
    assert paths
    for path in paths:
        load_config(path)


@pytest.mark.slow
def test_reproduce_table8_is_resumable_cell_by_cell(tmp_path, capsys):
    args = ["reproduce", "table8", "--iterations", "12", "--jobs", "1"]
    args += ["--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    cells = ["--only", "40x2-k5-maml", "40x2-k5-alfa_maml"]
    assert main([*args, *cells]) == 0
    rows = json.loads((tmp_path / "results" / "table8.json").read_text())
    assert [(r["net"], r["shots"], r["method"]) for r in rows] == [
        ("40x2", 5, "maml"),
        ("40x2", 5, "alfa_maml"),
    ]
    for row in rows:
        assert row["mse"] > 0 and row["ci95"] > 0 and row["iterations"] == 12
        assert row["paper_mse"] == PAPER_TABLE8[("40x2", 5)][row["method"]][0]
    table = (tmp_path / "results" / "table8.md").read_text()
    assert "| 40x2 | 5 | maml |" in table
    capsys.readouterr()
    assert main([*args, *cells]) == 0  # a second run skips both finished cells
    assert "2 cell(s) done, 0 to run" in capsys.readouterr().out
    assert json.loads((tmp_path / "results" / "table8.json").read_text()) == rows
