"""The docs cannot go stale: links and anchors resolve, named config keys exist, generated pages
(docs/api.md, docs/config.md, docs/paper-map.md) are what their generators write."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alfa import docs_check, paper_map
from alfa.config import config_from_dict, leaf_keys
from alfa.errors import ConfigError
from alfa.recipes import PAPER_CELLS

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_docs_have_no_problem():
    assert docs_check.check(ROOT) == []


def test_the_committed_paper_map_is_what_the_generator_writes(tmp_path, capsys):
    page = ROOT / "docs" / "paper-map.md"
    assert paper_map.main(["--check", "--root", str(ROOT), str(page)]) == 0, capsys.readouterr()
    stale = tmp_path / "paper-map.md"
    stale.write_text(page.read_text(encoding="utf-8").replace("| 4 |", "| 8 |", 1))
    assert paper_map.main(["--check", "--root", str(ROOT), str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err


def _write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_slugs_follow_github():
    assert docs_check.slug("Tasks per group (`train.task_group`)") == (
        "tasks-per-group-traintask_group"
    )
    assert docs_check.slug("Table 1") == "table-1"
    text = '# Setup\n## Setup\n```\n# not a heading\n```\n<a id="x.y"></a>\n'
    assert docs_check.anchors(text) == {"setup", "setup-1", "x.y"}


def test_broken_links_and_anchors_are_reported_and_good_ones_not(tmp_path):
    _write(tmp_path, "docs/other.md", "# Other page\n\n## A part\n")
    _write(tmp_path, "src/x.py", "")
    page = _write(
        tmp_path,
        "README.md",
        "[ok](docs/other.md) [ok](docs/other.md#a-part) [ok](src/x.py) [web](https://x.org/y)\n"
        "[gone](docs/gone.md) [bad anchor](docs/other.md#nope) [self](#top-page)\n"
        "```\n[in code](nowhere.md)\n```\n# Top page\n",
    )
    assert docs_check.link_problems(page, tmp_path) == [
        "README.md:2: link 'docs/gone.md': no file docs/gone.md",
        "README.md:2: link 'docs/other.md#nope': no anchor #nope in other.md",
    ]


def test_unknown_config_keys_are_reported_in_text_and_code(tmp_path):
    page = _write(
        tmp_path,
        "docs/a.md",
        "Set `rule.generator_init: official` or `meta.init=random`; not `rule.generatr`;\n"
        "`train.py` is a file and `model.eval()` a call.\n"
        "```bash\nalfa train c.yaml train.iterations=5 meta.stepz=3 x.name=1\n```\n",
    )
    known = docs_check.config_keys()
    assert docs_check.config_key_problems(page, tmp_path, known) == [
        "docs/a.md:1: unknown config key 'rule.generatr'",
        "docs/a.md:4: unknown config key 'meta.stepz'",
    ]


def test_keys_that_tell_configs_apart():
    a = config_from_dict({"rule": {"name": "alfa"}, "meta": {"steps": 3}, "name": "a"})
    b = config_from_dict({"rule": {"name": "maml"}, "meta": {"steps": 3}, "name": "b"})
    c = config_from_dict({"rule": {"name": "maml"}, "meta": {"steps": 3}, "seed": 4})
    assert paper_map.varying_keys([a, b]) == ["rule.name"]
    assert paper_map.varying_keys([a, b, c]) == ["seed", "rule.name"]
    assert leaf_keys({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}


def test_the_paper_map_links_every_paper_config_and_names_every_table():
    text = (ROOT / "docs" / "paper-map.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\(\.\./configs/paper/([\w]+)\.yaml\)", text))
    shipped = {p.stem for p in (ROOT / "configs" / "paper").glob("*.yaml")}
    table3 = {name for name in shipped if name.startswith("table3_")}
    assert linked == shipped and len(shipped - table3) == len(PAPER_CELLS) and len(table3) == 4
    assert {cell[0] for cell in PAPER_CELLS} <= set(paper_map.TABLES)
    for table in ("table3", "table8", "figure3"):
        assert f"## {paper_map.TABLES[table].split(':')[0]}" in text
    for what, _, overrides, _ in paper_map.SWITCHES:
        assert f"| {what} |" in text and all(f"`{o}`" in text for o in overrides.split())


@pytest.mark.parametrize(
    ("switch", "message"),
    [
        (("bad key", "Table 5", "rule.generatr_input=weights", "rules.alfa"), "generatr_input"),
        (("bad value", "Table 5", "rule.generator_input=both_ways", "rules.alfa"), "both_ways"),
        (("gone module", "Table 5", "rule.name=alfa", "rules.no_such"), "alfa.rules.no_such"),
    ],
)
def test_a_switch_that_no_longer_applies_fails_the_generator(monkeypatch, switch, message):
    monkeypatch.setattr(paper_map, "SWITCHES", [switch])
    with pytest.raises(ConfigError, match=message):
        paper_map.check_switches()


def test_table3_runs_are_read_from_the_script(tmp_path):
    _write(
        tmp_path,
        "scripts/metadataset_omniglot_minimal.py",
        '"""Runs."""\nimport sys\n\nRUNS = {\n    "a": ("A", []),\n'
        '    "b": ("B", ["meta.head_init=learned", "rule.name=alfa"]),  # both\n}\n',
    )
    assert paper_map.metadataset_runs(tmp_path) == [
        ("a", []),
        ("b", ["meta.head_init=learned", "rule.name=alfa"]),
    ]


def test_what_ran_is_read_from_the_results(tmp_path):
    status = paper_map.run_here(tmp_path)
    assert status["table8"].startswith("not run") and status["table3"].startswith("not run")
    rows = [{"net": "80x3", "shots": 5, "seed": s} for s in (0, 2)]
    _write(tmp_path, "results/table8.json", json.dumps({"rows": rows}))
    status = paper_map.run_here(tmp_path)["table8"]
    assert status.startswith("run: 80x3 5-shot (seeds 0, 2;")
    assert status.endswith(
        "not run: 40x2 5-shot, 40x2 10-shot, 40x2 20-shot, 80x3 10-shot, 80x3 20-shot"
    )
