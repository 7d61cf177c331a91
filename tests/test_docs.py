"""The docs cannot go stale: named config keys exist, generated pages (docs/config.md,
docs/paper-map.md) are what their generators write, the site's navigation lists every page.

Links and anchors between the pages, and the API reference rendered from the docstrings, are
checked by ``mkdocs build --strict`` in scripts/test.sh.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from alfa.config import config_from_dict, leaf_keys
from alfa.config.docs import key_docs
from alfa.errors import ConfigError
from alfa.paper import paper_map
from alfa.paper.recipes import PAPER_CELLS

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "docs/*.md")
SECTIONS = ("data", "model", "rule", "meta", "train", "eval")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SPAN = re.compile(r"`([^`\n]+)`")
_KEY = re.compile(rf"^(?:{'|'.join(SECTIONS)})\.[a-z_]+(?![\w(.])")
_CODE_KEY = re.compile(rf"(?<![\w.$/-])((?:{'|'.join(SECTIONS)})\.[a-z_]+)=")
_FILE_SUFFIXES = {"py", "md", "yaml", "yml", "json", "jsonl", "sh", "pt", "csv", "png", "txt"}


def _lines(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, line, inside a fenced code block) of every line but the fences."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        yield number, line, fenced


def config_key_problems(page: Path, root: Path, known: set[str]) -> list[str]:
    """Config keys named in ``page`` (backticks, or ``key=value`` in code) that do not exist."""
    problems = []
    name = page.relative_to(root).as_posix()
    for number, line, fenced in _lines(page.read_text(encoding="utf-8")):
        named = [m.group(1) for m in _CODE_KEY.finditer(line)] if fenced else []
        for span in [] if fenced else _SPAN.findall(line):
            match = _KEY.match(span.strip())
            if match and match.group(0).rsplit(".", 1)[1] not in _FILE_SUFFIXES:  # train.py
                named.append(match.group(0))
        problems += [f"{name}:{number}: unknown config key '{k}'" for k in named if k not in known]
    return problems


def test_every_config_key_the_docs_name_exists():
    known = {d.key for d in key_docs()}
    pages = sorted(p for pattern in PAGES for p in ROOT.glob(pattern))
    assert len(pages) > 10
    assert [problem for page in pages for problem in config_key_problems(page, ROOT, known)] == []


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


def test_unknown_config_keys_are_reported_in_text_and_code(tmp_path):
    page = _write(
        tmp_path,
        "docs/a.md",
        "Set `rule.generator_init: official` or `meta.init=random`; not `rule.generatr`;\n"
        "`train.py` is a file and `model.eval()` a call.\n"
        "```bash\nalfa train c.yaml train.iterations=5 meta.stepz=3 x.name=1\n```\n",
    )
    known = {d.key for d in key_docs()}
    assert config_key_problems(page, tmp_path, known) == [
        "docs/a.md:1: unknown config key 'rule.generatr'",
        "docs/a.md:4: unknown config key 'meta.stepz'",
    ]


def _nav_pages(nav: object) -> Iterator[str]:
    if isinstance(nav, str):
        yield nav
    elif isinstance(nav, list):
        for item in nav:
            yield from _nav_pages(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from _nav_pages(value)


def test_the_site_navigation_lists_every_page_and_only_pages_that_exist():
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    site = yaml.load(text, Loader=yaml.BaseLoader)  # no tags: the !!python/name lines stay text
    listed = [p for p in _nav_pages(site["nav"]) if p.endswith(".md")]
    on_disk = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(listed) == on_disk


def test_the_api_reference_renders_every_module():
    """A new module shows up in docs/api/ (``::: alfa.x.y``), on the page of its layer."""
    named = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith("::: "):
                module = line[4:].strip()
                layer = module.split(".")[1] if module.count(".") else ""
                assert page.stem == layer or (page.stem == "index" and module.count(".") <= 1), (
                    f"{module} is rendered on docs/api/{page.name}, not its layer's page"
                )
                named.add(module)
    modules = set()
    for path in (ROOT / "src" / "alfa").rglob("*.py"):
        parts = list(path.relative_to(ROOT / "src").with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts[-1] != "__main__" and not any(p.startswith("_") for p in parts):
            modules.add(".".join(parts))
    assert sorted(modules - named) == [], "modules missing from docs/api/"
    assert sorted(named - modules) == [], "docs/api/ names modules that do not exist"


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


_QUOTED = re.compile(r"([+-]?\d+\.\d+) \+- (\d+\.\d+)")


def quoted_numbers_missing(bullet: str, source: str) -> list[str]:
    """The ``mean +- ci`` pairs that a Results bullet quotes and its results file does not hold,
    as ``mean +- ci`` or as adjacent table cells (``| mean | ci |``). Sentences that speak of
    earlier numbers (numbers of a replaced run, kept for the record) are not checked."""
    missing = []
    for sentence in re.split(r"(?<=[.;])\s+(?=[A-Z(])", bullet):
        if "earlier" in sentence:
            continue
        for mean, ci in _QUOTED.findall(sentence):
            if f"{mean} +- {ci}" not in source and f"| {mean} | {ci} |" not in source:
                missing.append(f"{mean} +- {ci}")
    return missing


def test_quoted_numbers_detects_a_number_its_file_does_not_hold():
    source = "| MAML | 68.53 | 0.43 |\ns0: +10.43 +- 0.34"
    bullet = "MAML 68.53 +- 0.43%, +10.43 +- 0.34 points. ALFA 81.61 +- 0.38%."
    assert quoted_numbers_missing(bullet, source) == ["81.61 +- 0.38"]
    assert quoted_numbers_missing("The earlier numbers (71.65 +- 1.02%) came first.", "") == []


def test_every_number_the_readme_quotes_from_a_results_file_is_in_it():
    """A README Results bullet that links ``results/X.md`` quotes only numbers X.md holds, so a
    regenerated results file cannot leave stale numbers in the README."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    checked = 0
    for bullet in re.split(r"\n- ", section):
        link = re.match(r"\[(results/[\w.-]+\.md)\]", bullet)
        if link is None:
            continue
        source = (ROOT / link.group(1)).read_text(encoding="utf-8")
        bullet = " ".join(bullet.split())
        assert quoted_numbers_missing(bullet, source) == [], link.group(1)
        checked += len(_QUOTED.findall(bullet))
    assert checked >= 10  # the Omniglot rows are quoted
