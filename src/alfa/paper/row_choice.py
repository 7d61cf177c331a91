"""Which row of the Omniglot protocol a pretrained model uses, chosen on validation alone.

The rule (:func:`choose_row`), for a number of ways:

1. Every cell of that number of ways (:data:`~alfa.paper.omniglot_cells.CELLS`, seeds 0-2) must
   have run: the choice is made on every seed of every row or not at all.
2. A row with a diverged seed is not chosen. Of the others, the row with the highest best
   validation accuracy (``best_val``: the tested checkpoint's accuracy on the 200 validation
   tasks), averaged over its seeds, is chosen; a tie goes to the row listed first in
   :data:`~alfa.paper.omniglot_cells.METHODS`. The 600 test episodes play no part.
3. A variant of the protocol (:data:`~alfa.paper.omniglot_cells.VARIANTS`, e.g. ``jitter``) is
   added when its table holds the chosen row at that number of ways in at least one seed, no
   seed of it diverged, and its best validation accuracy is higher than the row's in every seed
   where both ran (of several such variants, the one with the highest mean).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alfa.errors import AlfaError
from alfa.paper.omniglot_cells import (
    LABELS,
    METHODS,
    SEEDS,
    VARIANTS,
    WAYS,
    cell_key,
    read_protocol_table,
    row_key,
    table_name,
)

__all__ = ["RowChoice", "choose_row"]


@dataclass(frozen=True)
class RowChoice:
    """A row chosen by :func:`choose_row`, with the validation accuracies that chose it."""

    ways: int
    method: str
    variant: str | None
    validation: dict[str, float]
    """Each eligible row's best validation accuracy (points), averaged over its seeds."""
    variants: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)
    """Each variant that ran the chosen row: (seed, the variant's, the row's best validation)."""

    def reason(self) -> str:
        """Why this row was chosen, in a sentence, and one more for each variant that ran it."""
        others = "".join(
            f"; {LABELS[m]} {v:.2f}" for m, v in self.validation.items() if m != self.method
        )
        text = (
            f"{LABELS[self.method]} has the highest best validation accuracy averaged over seeds "
            f"{SEEDS[0]}-{SEEDS[-1]} at {self.ways}-way ({self.validation[self.method]:.2f}"
            f"{others})."
        )
        for variant, pairs in self.variants.items():
            shown = ", ".join(f"s{s}: {v:.2f} against {b:.2f}" for s, v, b in pairs)
            verdict = "is" if variant == self.variant else "is not"
            text += f" Its {variant} variant {verdict} higher in every seed where both ran"
            text += f" ({shown})."
        return text

    def as_dict(self) -> dict[str, Any]:
        """The choice as a JSON object, its reason included (``pretrained_omniglot.json``)."""
        return {
            "method": self.method,
            "variant": self.variant,
            "validation": self.validation,
            "variants": {k: [list(p) for p in v] for k, v in self.variants.items()},
            "reason": self.reason(),
        }


def _best_val(row: dict[str, Any], table: Path) -> float:
    value = row.get("best_val")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        key = row_key(row)
        raise AlfaError(f"'{table}' cell {key} has no best validation accuracy (best_val)")
    return float(value)


def _variant_pairs(
    results: Path, variant: str, base: dict[int, float], ways: int, method: str
) -> list[tuple[int, float, float]] | None:
    """(seed, the variant's, the row's) best validation accuracies in the seeds where both ran;
    None when a seed of the variant diverged or it never ran the row."""
    table = results / f"{table_name(variant)}.json"
    ran = read_protocol_table(table)["rows"]
    rows = [r for r in ran if (r["ways"], r["method"]) == (ways, method)]
    if not rows or any(r.get("diverged") for r in rows):
        return None
    return [
        (r["seed"], _best_val(r, table), base[r["seed"]])
        for r in sorted(rows, key=lambda r: r["seed"])
    ]


def choose_row(results: Path, ways: int) -> RowChoice:
    """The row (and variant) of the Omniglot protocol in the folder ``results`` that validation
    chooses for ``ways``-way models, by the rule of this module's docstring.

    Raises:
        AlfaError: a cell of ``ways`` has not run, a table cannot be read, or every row diverged.
    """
    if ways not in WAYS:
        raise AlfaError(f"the protocol has no {ways}-way rows; it has {', '.join(map(str, WAYS))}")
    table = results / f"{table_name()}.json"
    ran = read_protocol_table(table)["rows"]
    rows = {(r["method"], r["seed"]): r for r in ran if r["ways"] == ways}
    missing = [cell_key(ways, m, s) for m in METHODS for s in SEEDS if (m, s) not in rows]
    if missing:
        raise AlfaError(
            f"'{table}' lacks {len(missing)} {ways}-way cell(s) ({', '.join(missing)}); the row "
            f"is chosen on every seed of every row: run them (alfa reproduce omniglot --only "
            f"'{ways}way-*') or name a row with --method"
        )
    validation = {
        m: statistics.fmean(_best_val(rows[m, s], table) for s in SEEDS)
        for m in METHODS
        if not any(rows[m, s].get("diverged") for s in SEEDS)
    }
    if not validation:
        raise AlfaError(f"every {ways}-way row of '{table}' diverged in a seed; none is chosen")
    method = max(validation, key=validation.__getitem__)
    base = {s: _best_val(rows[method, s], table) for s in SEEDS}
    variants: dict[str, list[tuple[int, float, float]]] = {}
    for variant in VARIANTS:
        pairs = _variant_pairs(results, variant, base, ways, method)
        if pairs:
            variants[variant] = pairs
    better = [v for v, pairs in variants.items() if all(a > b for _, a, b in pairs)]
    chosen = max(better, key=lambda v: statistics.fmean(a for _, a, _ in variants[v]), default=None)
    return RowChoice(ways, method, chosen, validation, variants)
