"""docs/api.md is generated from the docstrings, is up to date, and has no broken reference."""

from __future__ import annotations

import re
from pathlib import Path

from alfa import api_docs

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_api_reference_is_what_the_generator_writes(capsys):
    assert api_docs.main(["--check", str(ROOT / "docs" / "api.md")]) == 0, capsys.readouterr().err


def test_every_link_of_the_page_has_its_anchor():
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and links <= anchors, links - anchors
    for page in re.findall(r"\]\(([\w-]+\.md)\)", text):
        assert (ROOT / "docs" / page).is_file(), page


def test_a_broken_reference_is_reported_and_a_known_one_linked():
    renderer = api_docs.Renderer(anchors={id(api_docs.resolve("alfa.rules.alfa.ALFA")): "x.ALFA"})
    lines = renderer.docstring(
        "See :class:`~alfa.rules.ALFA` and :func:`alfa.no_such_thing`.", "", "here"
    )
    assert lines == ["See [`ALFA`](#x.ALFA) and `alfa.no_such_thing`."]
    assert renderer.broken == ["here: :func:`alfa.no_such_thing`"]


def test_argument_sections_become_lists_and_literal_blocks_code():
    lines = api_docs.Renderer().docstring(
        "Do it::\n\n    x = 1\n\nArgs:\n    a: first,\n        continued.\n    b: second.\n",
        "",
        "here",
    )
    assert lines == [
        "Do it:",
        "",
        "```python",
        "x = 1",
        "```",
        "",
        "",
        "**Args**",
        "",
        "- `a`: first, continued.",
        "- `b`: second.",
        "",
    ]
