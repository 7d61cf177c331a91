"""MkDocs hook of the docs site: links from a page to repository files outside ``docs/``.

The pages are also read on the code host, where ``[recipes](../src/alfa/paper/recipes.py)``
opens the file. On the site such a link would point outside it: this hook checks that the file
exists (a missing one is a warning, so ``mkdocs build --strict`` fails) and rewrites the link to
the file on the code host when ``repo_url`` is set in ``mkdocs.yml``, else to its path as code.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.repo_links")

_LINK = re.compile(r"(!?)\[([^\]]*)\]\((\.\./[^)\s#]*)(#[^)\s]*)?\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _rewrite_line(line: str, page: Path, docs: Path, root: Path, repo: str, name: str) -> str:
    def sub(match: re.Match[str]) -> str:
        label, target, anchor = match.group(2), match.group(3), match.group(4) or ""
        path = (page.parent / target).resolve()
        if path.is_relative_to(docs):
            return match.group(0)  # a page of the site: MkDocs checks it
        if not path.is_relative_to(root) or not path.exists():
            log.warning("%s: link '%s' names no file of the repository", name, target)
            return match.group(0)
        rel = path.relative_to(root).as_posix()
        if repo:
            return f"[{label}]({repo.rstrip('/')}/blob/main/{rel}{anchor})"
        return label if rel in label else f"{label} (`{rel}`)"

    return _LINK.sub(sub, line)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Check and rewrite the page's links to files outside ``docs/`` (code blocks left as is)."""
    docs = Path(config["docs_dir"]).resolve()
    root = docs.parent
    source = Path(page.file.abs_src_path)
    repo = config.get("repo_url") or ""
    out, fenced = [], False
    for line in markdown.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        out.append(
            line if fenced else _rewrite_line(line, source, docs, root, repo, page.file.src_uri)
        )
    return "\n".join(out)
