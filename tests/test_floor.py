"""``benchmarks/floor.py`` end to end on a tiny 4-CONV: its analytic count of the convolution
FLOPs equals what ``torch.utils.flop_counter`` counts in one meta-iteration of the engine, and
the floor it prints is the kernels' time plus the traffic at the measured bandwidth."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def floor(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import floor as module

    return module


def test_floor_counts_the_engines_convolutions(floor, capsys):
    args = ["--workload", "omniglot", "--tasks", "2", "--image-size", "16", "--filters", "4"]
    result = floor.main([*args, "--kernel-seconds", "0.01", "--count"])
    assert result["count_matches"], (result["conv_gflop"], result["counted_conv_gflop"])
    # 4 layers at 16, 8, 4, 2 pixels; per step 3 kernels of each kind (first layer: two
    # forward and two weight-gradient ones), 5 steps, 2 tasks, plus the query set once.
    assert result["layers"] == 4
    calls = {(k["kind"], k["input"][0], k["input"][2]): k["calls"] for k in result["kernels"]}
    assert calls["forward", 20, 16] == 2 * 5 * 2 and calls["weight_grad", 20, 16] == 2 * 5 * 2
    assert ("input_grad", 20, 16) not in calls
    assert calls["input_grad", 20, 8] == 3 * 5 * 2 and calls["forward", 100, 8] == 2
    # The reference takes one more backward pass per step (the generator's input).
    assert result["reference_conv_gflop"] > result["counted_conv_gflop"]
    expected = result["conv_s"] + result["activation_traffic_gb"] / result["bandwidth_gb_per_s"]
    assert result["floor_s"] == pytest.approx(expected)
    out = capsys.readouterr().out
    assert "floor:" in out and out.strip().splitlines()[-1].startswith("{")


def test_floor_refuses_a_workload_without_convolutions(floor):
    with pytest.raises(SystemExit):
        floor.main(["--workload", "sinusoid"])
