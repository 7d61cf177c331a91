"""The automatic thread count (train.threads: 0) and the runtime switches."""

from __future__ import annotations

import os

import pytest
import torch

from alfa.config import config_from_dict
from alfa.runs.build import build_optimizer, default_threads

CONV = {"model": {"name": "conv4"}, "data": {"name": "omniglot", "query": 1, "root": "x"}}


@pytest.mark.parametrize(("load", "expected"), [(0.0, 4), (0.4, 4), (1.2, 3), (3.6, 1), (9.0, 1)])
def test_convolutional_networks_take_the_idle_cores(monkeypatch, load, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert default_threads(config_from_dict(CONV), torch.device("cpu")) == expected


def test_the_mlp_takes_one_thread_on_an_idle_machine(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert default_threads(config_from_dict({}), torch.device("cpu")) == 1


def test_the_outer_optimiser_is_adam_in_its_multi_tensor_form():
    from alfa.runs.build import build_learner

    config = config_from_dict({"model": {"hidden": [4]}})
    optimiser = build_optimizer(config, build_learner(config, task="regression", in_channels=1))
    assert isinstance(optimiser, torch.optim.Adam)
    assert optimiser.defaults["foreach"] is True
    assert optimiser.defaults["lr"] == config.meta.lr
