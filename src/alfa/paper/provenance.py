"""Where a results file came from: the commit of the code and the command that wrote it (the
same functions record the provenance of a run: :mod:`alfa.runs.provenance`)."""

from __future__ import annotations

from alfa.runs.provenance import command_line, source_commit

__all__ = ["command_line", "source_commit"]
