"""The documentation check: links, anchors, config keys and generated pages.

Reads ``README.md`` and ``docs/*.md`` and reports, one line each:

- a relative link whose file or folder does not exist, or whose ``#anchor`` is not a heading
  (GitHub's slug of it) or an ``<a id="...">`` of the page it points at;
- a config key named in backticks (```rule.generator_init```, ```meta.init: random```,
  ```train.iterations=2000```) or as ``key=value`` in a code block that the config schema
  (:mod:`alfa.config`) does not have;
- a generated page (``docs/api.md``, ``docs/config.md``, ``docs/paper-map.md``) that is not what
  its generator writes now::

    python -m alfa.docs_check        # exit 1 and one line per problem, else 0
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PAGES", "anchors", "check", "config_key_problems", "link_problems", "slug"]

PAGES = ("README.md", "docs/*.md")
"""The pages checked, as globs under the repository root."""

SECTIONS = ("data", "model", "rule", "meta", "train", "eval")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_SPAN = re.compile(r"`([^`\n]+)`")
_KEY = re.compile(rf"^(?:{'|'.join(SECTIONS)})\.[a-z_]+(?![\w(.])")
_CODE_KEY = re.compile(rf"(?<![\w.$/-])((?:{'|'.join(SECTIONS)})\.[a-z_]+)=")
_FILE_SUFFIXES = {"py", "md", "yaml", "yml", "json", "jsonl", "sh", "pt", "csv", "png", "txt"}
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def _lines(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, line, inside a fenced code block) of every line but the fences."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        yield number, line, fenced


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor of a Markdown page: heading slugs (repeats numbered) and ``<a id>``."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line, fenced in _lines(text):
        found.update(_ANCHOR.findall(line))
        heading = _HEADING.match(line)
        if heading and not fenced:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def link_problems(page: Path, root: Path) -> list[str]:
    """Relative links of ``page`` whose target or anchor does not exist."""
    problems = []
    text = page.read_text(encoding="utf-8")
    name = page.relative_to(root).as_posix()
    for number, line, fenced in _lines(text):
        if fenced:
            continue
        for target in _LINK.findall(_SPAN.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            path = (page.parent / path_part).resolve() if path_part else page.resolve()
            where = f"{name}:{number}: link '{target}'"
            if not path.exists():
                problems.append(f"{where}: no file {path_part}")
            elif (
                anchor
                and path.suffix == ".md"
                and anchor not in anchors(path.read_text(encoding="utf-8"))
            ):
                problems.append(f"{where}: no anchor #{anchor} in {path.name}")
    return problems


def config_keys() -> set[str]:
    """Every dotted key of the config schema."""
    from alfa.config_docs import key_docs

    return {d.key for d in key_docs()}


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


def generated_problems(root: Path) -> list[str]:
    """Generated pages that differ from what their generator writes now."""
    from alfa import api_docs, config_docs, paper_map

    problems = []
    api_text, broken = api_docs.render_markdown()
    problems += [f"docs/api.md: broken reference {b}" for b in broken]
    pages = {
        "docs/api.md": (api_text, "python -m alfa.api_docs"),
        "docs/config.md": (config_docs.render_markdown(), "python -m alfa.config_docs"),
        "docs/paper-map.md": (paper_map.render_markdown(root), "python -m alfa.paper_map"),
    }
    for page, (text, command) in pages.items():
        path = root / page
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            problems.append(f"{page}: out of date; run: {command}")
    return problems


def pages(root: Path) -> list[Path]:
    return sorted(p for pattern in PAGES for p in root.glob(pattern))


def check(root: Path, *, generated: bool = True) -> list[str]:
    """Every problem of the documentation under ``root``, one line each."""
    known = config_keys()
    problems = []
    for page in pages(root):
        problems += link_problems(page, root) + config_key_problems(page, root, known)
    if generated:
        problems += generated_problems(root)
    return problems


def main(argv: list[str] | None = None) -> int:
    """``python -m alfa.docs_check [--root ROOT]``: exit 1 when the docs have a problem."""
    parser = argparse.ArgumentParser(prog="python -m alfa.docs_check", description=__doc__)
    parser.add_argument("--root", default=".", help="the repository (default: .)")
    args = parser.parse_args(argv)
    problems = check(Path(args.root))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
