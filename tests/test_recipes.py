"""Shipped configs and the Table 8 recipe."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from alfa.cli.main import main
from alfa.config import load_config
from alfa.paper.table8_cells import PAPER_TABLE8, controlled_config, shipped_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


METHODS = ("maml", "learned_fixed", "alfa_maml")


@pytest.mark.parametrize("net, shots", sorted(PAPER_TABLE8))
@pytest.mark.parametrize("method", METHODS)
def test_shipped_sinusoid_configs_match_the_recipe(net, shots, method):
    shipped = load_config(CONFIGS / "sinusoid" / f"{method}_k{shots}_{net}.yaml")
    assert shipped == shipped_config(net, shots, method)
    assert replace(shipped, name="x") == replace(controlled_config(net, shots, method, 0), name="x")


def test_default_sinusoid_configs_are_five_shot_40x2():
    for method in METHODS:
        shipped = load_config(CONFIGS / "sinusoid" / f"{method}.yaml")
        assert shipped == shipped_config("40x2", 5, method)
        assert shipped.data.shots == 5 and shipped.model.hidden == (40, 40)


def test_every_shipped_config_loads():
    paths = sorted(CONFIGS.rglob("*.yaml"))
    assert paths
    for path in paths:
        load_config(path)


def test_reproduce_table8_is_the_recipe_and_eval_reproduces_its_rows(tmp_path, capsys):
    args = ["reproduce", "table8", "--iterations", "6", "--jobs", "1", "--tasks", "50"]
    args += ["--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    cells = ["--only", "40x2-k5-maml-s1", "40x2-k5-alfa_maml-s1"]
    assert main([*args, *cells]) == 0
    doc = json.loads((tmp_path / "results" / "table8.json").read_text())
    rows = doc["rows"]
    assert [(r["net"], r["shots"], r["method"], r["seed"]) for r in rows] == [
        ("40x2", 5, "maml", 1),
        ("40x2", 5, "alfa_maml", 1),
    ]
    assert doc["command"].startswith("alfa reproduce table8 --results ")
    assert "--iterations 6 --tasks 50" in doc["command"]
    for row in rows:
        assert row["grad_clip"] == 1.0 and row["iterations"] == 6 and row["test_tasks"] == 50
        # The recorded cell is what `alfa eval` of its shipped best checkpoint prints.
        capsys.readouterr()
        cell = tmp_path / "results" / "table8" / f"40x2-k5-{row['method']}-s1"
        assert main(["eval", str(cell), "--tasks", "50", "--json"]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["iteration"] == row["checkpoint_iteration"]
        assert result["mean"] == pytest.approx(row["mse"], rel=1e-12)
        assert result["ci95"] == pytest.approx(row["ci95"], rel=1e-12)
    assert "| 40x2 | 5 | maml | 1 |" in (tmp_path / "results" / "table8.md").read_text()
    capsys.readouterr()
    assert main([*args, *cells]) == 0  # a second run skips both finished cells
    assert "2 cell(s) done, 0 to run" in capsys.readouterr().out
    assert json.loads((tmp_path / "results" / "table8.json").read_text())["rows"] == rows


def test_shipped_paper_configs_match_the_recipes():
    from alfa.paper.recipes import PAPER_CELLS, paper_config

    shipped = {p.stem for p in (CONFIGS / "paper").glob("*.yaml")}
    shipped -= {p.stem for p in (CONFIGS / "paper").glob("table3_*.yaml")}  # test_table3_recipes
    expected = {paper_config(*cell).name for cell in PAPER_CELLS}
    assert shipped == expected
    for cell in PAPER_CELLS:
        config = paper_config(*cell)
        assert load_config(CONFIGS / "paper" / f"{config.name}.yaml") == config
        assert config.meta.batch_size == (2 if config.data.shots == 5 else 4)
        assert config.data.query == 15
        assert config.meta.steps == (int(cell[6][-1]) if cell[0] == "table7" else 5)
        assert config.rule.lr == 0.01 and config.meta.lr == 0.001


def test_paper_cells_cover_tables_1_2_and_4():
    from alfa.paper.recipes import PAPER_CELLS

    tables = {cell[0] for cell in PAPER_CELLS}
    assert tables == {"table1", "table2", "table4", "table5", "table6", "table7"}
    table1 = [c for c in PAPER_CELLS if c[0] == "table1"]
    assert {(c[1], c[3], c[5]) for c in table1} == {
        (d, b, k)
        for d in ("mini_imagenet", "tiered_imagenet")
        for b in ("conv4", "resnet12")
        for k in (1, 5)
    }
    assert {c[6] for c in table1} >= {"maml", "alfa_maml", "alfa_random"}
    assert all(c[2] == "cub" for c in PAPER_CELLS if c[0] == "table2")
    assert {c[4] for c in PAPER_CELLS if c[0] == "table4"} == {20}


def test_ablation_recipes_switch_what_the_tables_vary():
    from alfa.paper.recipes import PAPER_CELLS, paper_config

    cells = {c[6]: paper_config(*c) for c in PAPER_CELLS if c[0] in ("table5", "table6", "table7")}
    assert cells["input-weights"].rule.generator_input == "weights"
    assert [cells[f"steps-{s}"].meta.steps for s in range(1, 6)] == [1, 2, 3, 4, 5]
    fixed = cells["maml-alpha-fixed-step"].rule
    assert fixed.name == "learned_fixed" and fixed.per_step and not fixed.per_layer
    assert fixed.learn_alpha and not fixed.learn_beta
    adaptive = cells["random-beta-adaptive-layer"]
    assert adaptive.rule.name == "alfa" and adaptive.rule.generate == ("beta",)
    assert adaptive.meta.init == "random" and adaptive.rule.per_layer
    assert len(cells) == 3 + 16 + 5
