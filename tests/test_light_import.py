"""``import alfa`` and every ``alfa ... --help`` stay light: torch is imported on first use only."""

from __future__ import annotations

import subprocess
import sys

import pytest

from alfa.cli.main import build_parser


def _imports_torch(code: str) -> bool:
    script = f"import sys\n{code}\nprint('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.strip().splitlines()[-1] == "True"


def _commands() -> list[list[str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = [[]]
    for name, p in sub.choices.items():
        commands.append([name])
        for action in p._actions:
            if action.dest.endswith("_command"):
                commands += [[name, child] for child in action.choices]
    return commands


def test_import_alfa_does_not_import_torch():
    assert not _imports_torch("import alfa")
    assert _imports_torch("import alfa\nalfa.MetaLearner")  # the probe can see torch


@pytest.mark.parametrize("words", _commands(), ids=lambda w: " ".join(w) or "alfa")
def test_help_of_every_command_does_not_import_torch(words):
    code = (
        "from alfa.cli.main import main\n"
        f"try:\n    main({[*words, '--help']!r})\nexcept SystemExit:\n    pass"
    )
    assert not _imports_torch(code)
