"""The Python code of the README and of the guides runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/your-model.md", "docs/learn2learn.md"]


def _blocks(page: str) -> list[str]:
    text = (ROOT / page).read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)
    return [b for b in blocks if not b.startswith("# learn2learn")]  # shown for comparison


@pytest.mark.parametrize("page", PAGES)
def test_the_python_blocks_of_a_page_run_in_order(page, capsys):
    blocks = _blocks(page)
    assert blocks
    namespace: dict = {"__name__": "__doc_example__"}
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)  # the project's own documentation
    out = capsys.readouterr().out
    if page == "docs/your-model.md":
        assert "module '1' (Sign) cannot be part of a base learner: Python control flow" in out
        assert "support_x has shape (5, 1); expected [tasks, examples, features...]" in out
    if page == "docs/learn2learn.md":
        assert "torch.Size([1, 5, 1])" in out
