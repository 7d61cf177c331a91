"""What a table's recipe does when its report cannot be made (alfa.paper.result_table)."""

from __future__ import annotations

import json

import pytest

from alfa.errors import AlfaError
from alfa.paper.result_table import read_table, save_table


def test_a_report_that_cannot_be_made_still_saves_every_row(tmp_path, capsys):
    path = tmp_path / "table.json"
    doc = {"rows": [{"cell": "a", "score": 1.0}], "summary": ["old"], "command": "c"}

    def broken() -> None:
        doc["summary"] = ["half written"]
        raise AlfaError("cannot read per-episode file 'x/a.json'")

    assert save_table(broken, path, doc, ("summary",)) == "cannot read per-episode file 'x/a.json'"
    assert "the rows are saved in" in capsys.readouterr().err
    saved = json.loads(path.read_text())
    assert saved == {"rows": [{"cell": "a", "score": 1.0}], "command": "c"}
    read = read_table(
        path, row_keys={"cell": (str,)}, score="score", key=lambda r: r["cell"], known={"a"}
    )
    assert read["rows"] == saved["rows"]  # the recipe reads it back and goes on from it
    written = []
    assert save_table(lambda: written.append(1), path, doc, ("summary",)) is None
    assert written == [1] and json.loads(path.read_text()) == saved  # write() alone writes


def test_an_error_that_is_not_the_users_is_not_hidden(tmp_path):
    def bug() -> None:
        raise KeyError("rows")

    with pytest.raises(KeyError):
        save_table(bug, tmp_path / "table.json", {"rows": []}, ())
    assert not (tmp_path / "table.json").exists()
