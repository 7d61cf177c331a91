"""The Quick-start demo (`alfa demo`): three rows under one protocol, tested on fixed tasks."""

from __future__ import annotations

import re

from alfa.cli.main import main
from alfa.config import load_config
from alfa.paper.table8_cells import controlled_config


def test_demo_trains_and_tests_the_three_rows(tmp_path, capsys):
    runs = tmp_path / "demo"
    assert main(["demo", "--iterations", "4", "--tasks", "10", "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^(MAML|learned-fixed|ALFA\+MAML)\s+([0-9.]+)\s+([0-9.]+)", out, re.M)
    assert [r[0] for r in rows] == ["MAML", "learned-fixed", "ALFA+MAML"]
    assert all(float(mse) > 0 and float(ci) > 0 for _, mse, ci in rows)
    # each row is the Table 8 recipe's 40x2 5-shot cell (seed 0) at the demo's budget
    for method in ("maml", "learned_fixed", "alfa_maml"):
        (run,) = runs.glob(f"{method}-*")
        config = load_config(run / "config.yaml")
        want = controlled_config("40x2", 5, method, 0, 4)
        assert config.rule == want.rule and config.meta == want.meta and config.seed == 0
