"""The default generator preset (``DEFAULT_GENERATOR``) can change without changing any recipe:
every shipped config, and every config a recipe builds, names the generator it reproduces."""

from __future__ import annotations

import pytest

import alfa.config.load as config_load
from alfa.config import config_to_dict, load_config
from alfa.paper.metadataset_recipes import TABLE3_COLUMNS, table3_config
from alfa.paper.omniglot_cells import CELLS as OMNIGLOT_CELLS
from alfa.paper.omniglot_cells import protocol_config
from alfa.paper.recipes import PAPER_CELLS, paper_config
from alfa.paper.table8_cells import CELLS as TABLE8_CELLS
from alfa.paper.table8_cells import controlled_config
from shared_paths import REPO


def _every_recipe() -> dict[str, dict]:
    built = {}
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        built[str(path.relative_to(REPO))] = config_to_dict(load_config(path))
    for cell in PAPER_CELLS:
        built[f"paper {cell}"] = config_to_dict(paper_config(*cell))
    for net, shots, method, _ in TABLE8_CELLS:
        built[f"table8 {net} {shots} {method}"] = config_to_dict(
            controlled_config(net, shots, method, 0)
        )
    for ways, method, _ in OMNIGLOT_CELLS:
        built[f"omniglot {ways} {method}"] = config_to_dict(protocol_config(ways, method))
    for column in TABLE3_COLUMNS:
        built[f"table3 {column}"] = config_to_dict(table3_config(column))
    return built


def test_a_new_default_generator_changes_no_recipe(monkeypatch):
    now = _every_recipe()
    assert any(c["rule"]["name"] == "alfa" for c in now.values())
    monkeypatch.setattr(config_load, "DEFAULT_GENERATOR", "stable")
    changed = sorted(key for key, config in _every_recipe().items() if config != now[key])
    assert changed == [], "these recipes do not name their generator"


def test_the_default_applies_to_an_alfa_config_that_names_none(monkeypatch):
    assert load_config(None, ["rule.name=alfa"]).rule.generator == "paper"
    monkeypatch.setattr(config_load, "DEFAULT_GENERATOR", "stable")
    assert load_config(None, ["rule.name=alfa"]).rule.generator == "stable"
    pinned = load_config(None, ["rule.name=alfa", "rule.generator=paper"]).rule
    assert pinned.generator == "paper" and pinned.state_encoding == "raw"
    one = load_config(None, ["rule.name=alfa", "rule.state_encoding=raw"]).rule
    assert (one.generator, one.generator_output) == ("custom", "bounded")
    assert load_config(None, ["rule.name=maml"]).rule.generator == "paper"
    # a saved config names its generator, so it reads back as it was trained
    saved = config_to_dict(load_config(None, ["rule.name=alfa", "rule.generator=paper"]))
    assert config_load.config_from_dict(saved).rule.generator == "paper"


@pytest.mark.parametrize("name", ["paper", "stable"])
def test_the_default_is_a_preset(name):
    assert config_load.DEFAULT_GENERATOR in config_load.GENERATOR_PRESETS
    assert name in config_load.GENERATOR_PRESETS
