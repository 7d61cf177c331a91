"""Table 3 recipes: the shipped configs, Meta-Dataset's hyperparameters, the paper's numbers beside
them in docs/metadataset.md, and ``alfa train --dry-run`` of every recipe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alfa.cli.main import main
from alfa.config import config_to_dict, load_config
from alfa.paper.metadataset_recipes import TABLE3, TABLE3_COLUMNS, TABLE3_SOURCES, table3_config
from metadataset_writer import write_source
from shared_paths import REPO, SHARED

PAPER = REPO / "configs" / "paper"
RECIPES = sorted(PAPER.glob("table3_*.yaml"))


def test_shipped_table3_configs_are_the_recipes() -> None:
    assert [p.stem for p in RECIPES] == sorted(table3_config(c).name for c in TABLE3_COLUMNS)
    for column in TABLE3_COLUMNS:
        config = table3_config(column)
        assert load_config(PAPER / f"{config.name}.yaml") == config


@pytest.mark.parametrize("column", TABLE3_COLUMNS)
def test_meta_dataset_hyperparameters(column: str) -> None:
    c = table3_config(column)
    # maml_imagenet.gin / maml_init_with_proto_imagenet.gin (best), and the files they include
    gin = {
        "fomaml": (0.09915203576061224, 10, 15, "zero", 0.0003601303690709516),
        "foprotomaml": (0.005435022808033229, 6, 0, "proto", 0.00036339913514891586),
    }[column.removesuffix("_alfa")]
    assert (c.rule.lr, c.meta.steps, c.eval.steps, c.meta.head_init, c.meta.lr) == gin
    assert (c.model.name, c.model.norm, c.data.image_size, c.data.ways) == (
        "resnet18",
        "support",
        126,
        50,
    )
    assert c.data.name == "metadataset" and c.data.root.endswith("ilsvrc_2012")
    assert c.meta.first_order and c.eval.first_order and c.meta.batch_size == 1
    assert c.eval.tasks == 600 and c.train.val_every == c.train.checkpoint_every == 500


@pytest.mark.parametrize("baseline", ["fomaml", "foprotomaml"])
def test_alfa_column_differs_from_its_baseline_in_the_rule_only(baseline: str) -> None:
    base = config_to_dict(table3_config(baseline))
    alfa = config_to_dict(table3_config(f"{baseline}_alfa"))
    assert base.pop("name") != alfa.pop("name")
    assert base.pop("rule")["name"] == "maml" and alfa["rule"].pop("name") == "alfa"
    alfa.pop("rule")
    assert base == alfa


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+\.\d+", line)]


def test_paper_numbers_are_the_papers_table_3() -> None:
    paper = SHARED / "docs" / "paper-alfa-neurips2020.md"
    if not paper.is_file():
        pytest.skip("the paper's text is not available")
    lines = paper.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Table 3:"))
    rows = {}
    for line in lines[start : start + 20]:
        name = line.split("\t")[0].strip()
        if name in TABLE3_SOURCES:
            rows[name] = _numbers(line)
    assert list(rows) == list(TABLE3_SOURCES)
    for r, source in enumerate(TABLE3_SOURCES):
        expected = [x for column in TABLE3_COLUMNS for x in TABLE3[column][r]]
        assert rows[source] == expected, source


def test_docs_table_holds_the_paper_numbers() -> None:
    text = (REPO / "docs" / "metadataset.md").read_text()
    for r, source in enumerate(TABLE3_SOURCES):
        row = next(line for line in text.splitlines() if line.startswith(f"| {source} |"))
        assert _numbers(row) == [x for c in TABLE3_COLUMNS for x in TABLE3[c][r]], source
    for path in RECIPES:
        assert f"configs/paper/{path.name}" in text


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_dry_run_of_every_recipe(path: Path, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    head = 512 * 50 + 50
    base = re.search(r"meta-parameters: ([\d,]+) \(base learner ([\d,]+) \+ rule ([\d,]+)\)", out)
    assert base is not None
    assert int(base.group(2).replace(",", "")) == 11_180_736 + head
    assert (int(base.group(3).replace(",", "")) > 0) == path.stem.endswith("_alfa")
    assert "estimated peak memory" in out and "image_size: 126" in out
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_a_recipe_runs_on_records(tmp_path, capsys) -> None:
    """One outer step and two test episodes of fo-Proto-MAML + ALFA with the recipe's ResNet-18
    on a small synthetic source (smaller images and fewer steps than the recipe)."""
    from alfa.paper.metadataset_run import main as run

    root = tmp_path / "source"
    write_source(root, [4] * 10, alphabets={"TRAIN": [5], "VALID": [], "TEST": [5]}, size=8)
    recipe = PAPER / "table3_metadataset_ilsvrc_resnet18_foprotomaml_alfa.yaml"
    overrides = [f"data.root={root}", "data.image_size=16", "meta.steps=1", "eval.tasks=2"]
    overrides += ["train.iterations=1", "train.log_every=1", "train.threads=1"]
    assert run(["--config", str(recipe), "--out", str(tmp_path / "run"), *overrides]) == 0
    assert '"episodes": 2' in capsys.readouterr().out
