"""The hostile-input suite: crafted files and values, each run by the ``alfa`` command (or the
Python API) in a worker process under an address-space limit.

Every case must end in what its group promises: one line ``alfa: error: ...`` and exit code 2
(or a data-check report whose problems name the file, or a warning where going on is right),
no traceback, a peak resident memory under :data:`PEAK_RSS`, and nothing written before lost.
The cases of one test module run in one worker (importing torch once keeps the suite short);
the worker's peak resident memory only grows, so the peak recorded after a case bounds that
case's own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ADDRESS_SPACE = 2 * 2**30
"""The worker's address-space limit (``RLIMIT_AS``): an allocation past it is a MemoryError,
which would show as a traceback and fail its case."""

PEAK_RSS = 512 * 2**20
"""The largest peak resident memory (``VmHWM``) any case may reach: the worker with torch
imported starts near 225 MiB; the largest case measured reached 436 MiB."""

WORKER = Path(__file__).with_name("hostile_worker.py")


@dataclass
class Case:
    """One hostile input.

    Attributes:
        build: Makes the crafted files under the folder it is given and returns the case for
            the worker: ``{"argv": [...]}`` or ``{"python": CODE}`` (plus ``env``, ``cwd``).
        expect: Substrings of the outcome's one line (the error, the report's problem, the
            exception's message).
        kind: ``error`` (one line on stderr, ``rc``), ``ok`` (exit code 0, ``expect`` on
            stdout), ``report`` (an ``alfa data check`` report
            with one problem line holding ``expect``, exit code 2), ``warning`` (a line
            ``alfa: warning: ...`` on stderr, exit code ``rc``) or ``raises`` (the Python API
            raises ``raises``, a subclass of ``alfa.errors.AlfaError``).
        rc: The exit code expected.
        raises: For ``raises``: the exception class's qualified name.
        keep: Files (relative to the case's folder) whose bytes must be unchanged afterwards.
    """

    build: Callable[[Path], dict[str, Any]]
    expect: tuple[str, ...] = ()
    kind: str = "error"
    rc: int = 2
    raises: str = "alfa.errors.ArgumentError"
    keep: tuple[str, ...] = field(default_factory=tuple)


def run_worker(cases: list[dict[str, Any]], cwd: Path) -> list[dict[str, Any]]:
    """Run ``cases`` in one worker process under :data:`ADDRESS_SPACE`; their outcomes."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.pop("WORLD_SIZE", None)
    done = subprocess.run(
        [sys.executable, str(WORKER)],
        input=json.dumps({"cap": ADDRESS_SPACE, "cases": cases}),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _digest(path: Path) -> bytes | None:
    import hashlib

    return hashlib.sha256(path.read_bytes()).digest() if path.is_file() else None


def outcomes(cases: dict[str, Case], base: Path) -> dict[str, dict[str, Any]]:
    """Build every case under ``base/<name>``, run them all in one worker, and return each
    outcome with ``kept``: whether every file of ``keep`` is unchanged."""
    specs, kept = [], {}
    folders = {name: base / re.sub(r"[^A-Za-z0-9]+", "_", name) for name in cases}
    for name, case in cases.items():
        folder = folders[name]
        folder.mkdir(parents=True)
        spec = case.build(folder)
        spec.setdefault("cwd", str(folder))
        specs.append(spec)
        kept[name] = {k: _digest(folder / k) for k in case.keep}
    results = run_worker(specs, base)
    out = {}
    for (name, case), result in zip(cases.items(), results, strict=True):
        now = {k: _digest(folders[name] / k) for k in case.keep}
        result["folder"] = str(folders[name])
        result["kept"] = all(v is not None and now[k] == v for k, v in kept[name].items())
        out[name] = result
    return out


def check(case: Case, result: dict[str, Any]) -> None:
    """Assert that ``result`` is what ``case`` promises (see :class:`Case`)."""
    assert result["traceback"] is None, result["traceback"]
    both = result["out"] + result["err"]
    assert "Traceback" not in both, both
    assert result["peak_rss"] < PEAK_RSS, f"peak resident memory {result['peak_rss']:,} bytes"
    assert result["kept"], "a file that was there before changed or disappeared"
    if case.kind == "ok":
        assert result["rc"] == 0, both
        line = result["out"]
    elif case.kind == "raises":
        assert result["raised"] is not None, both
        assert case.raises in result["classes"], result["raised"]
        assert "alfa.errors.AlfaError" in result["classes"], result["raised"]
        line = result["message"]
        assert "\n" not in line, line
    elif case.kind == "report":
        assert result["rc"] == case.rc, both
        problems = [p for p in result["out"].splitlines() if p.startswith("  - ")]
        matching = [p for p in problems if all(e in p for e in case.expect)]
        assert matching, result["out"]
        line = matching[0]
    else:
        assert result["rc"] == case.rc, both
        prefix = "alfa: error: " if case.kind == "error" else "alfa: warning: "
        lines = [x for x in result["err"].splitlines() if x.startswith(prefix)]
        assert len(lines) == 1, result["err"]
        if case.kind == "error":  # the last line (a run may say where it is first)
            assert result["err"].strip().splitlines()[-1] == lines[0], result["err"]
        line = lines[0]
    for expected in case.expect:
        assert expected in line, line


@pytest.fixture(scope="module")
def hostile(request, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """The outcomes of the test module's ``CASES``, run once per module."""
    cases: dict[str, Case] = request.module.CASES
    return outcomes(cases, tmp_path_factory.mktemp(request.module.__name__.split(".")[-1]))
