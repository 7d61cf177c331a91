"""Test-wide settings: a fixed seed per test, the unmarked tests on the CPU, and GPU tests
skipped without CUDA."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _cpu_unless_gpu(request, monkeypatch):
    """The unmarked suite runs on the CPU also where a GPU is present: ``train.device: auto``
    would pick it, and the exact-resume checks would meet cuDNN's nondeterminism. Tests
    marked ``gpu`` see the GPU; the others, and the processes they start, see none."""
    if request.node.get_closest_marker("gpu") is not None:
        return
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def float64():
    """Float64 as the default dtype for the test (restored afterwards)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped where no CUDA device is present (as in CI)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
