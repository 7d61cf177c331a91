"""The outer loss's per-step weights: ``meta.multi_step_loss`` false, true and annealed."""

from __future__ import annotations

import math

import pytest
import torch

from alfa.config import load_config
from alfa.engine.multi_step import annealed_weights, step_loss_weights
from alfa.errors import ConfigError
from reference_impl import Spec, copy_meta_tensors, reference_meta_loss
from test_reference import (
    MLP_CASES,
    RTOL,
    _mlp,
    build_engine,
    randomise,
    regression_batch,
    spec_for,
)


def _close(a: list[float], b: list[float]) -> None:
    assert len(a) == len(b)
    assert all(math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15) for x, y in zip(a, b, strict=True))


def test_annealed_weights_by_hand():
    # S = 5 steps, E = 15 epochs: d = 1 / 75, floor 0.006, the last weight at most 0.976.
    _close(annealed_weights(5, 0, 15), [0.2, 0.2, 0.2, 0.2, 0.2])
    _close(annealed_weights(5, 1, 15), [14 / 75] * 4 + [19 / 75])
    _close(annealed_weights(5, 7, 15), [8 / 75] * 4 + [43 / 75])
    _close(annealed_weights(5, 14, 15), [1 / 75] * 4 + [71 / 75])
    _close(annealed_weights(5, 15, 15), [0.0, 0.0, 0.0, 0.0, 1.0])  # from epoch E: last only
    _close(annealed_weights(5, 99, 15), [0.0, 0.0, 0.0, 0.0, 1.0])
    # E = 50: at epoch 49 the early weights 0.2 - 49/250 = 0.004 stop at the floor 0.006 and
    # the last one 0.2 + 4 * 49/250 = 0.984 at its cap 1 - 4 * 0.006 = 0.976.
    _close(annealed_weights(5, 49, 50), [0.006] * 4 + [0.976])
    _close(annealed_weights(2, 1, 4), [0.5 - 1 / 8, 0.5 + 1 / 8])
    _close(annealed_weights(1, 0, 15), [1.0])


def test_weights_of_each_mode_and_the_epoch_of_an_iteration():
    _close(step_loss_weights(False, 3, 1), [0.0, 0.0, 1.0])
    _close(step_loss_weights(True, 4, 1), [0.25] * 4)
    # 1-based iterations 1..500 are epoch 0, 501..1000 epoch 1 (official: iteration // 500).
    for iteration, epoch in ((1, 0), (500, 0), (501, 1), (1000, 1), (7001, 14), (7501, 15)):
        _close(step_loss_weights("annealed", 5, iteration), annealed_weights(5, epoch, 15))
    _close(
        step_loss_weights("annealed", 5, 7, epochs=2, epoch_iterations=3),
        annealed_weights(5, 2, 2),
    )
    with pytest.raises(ValueError, match="multi_step_loss"):
        step_loss_weights("mean", 5, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", ["maml", "alfa_official"])
@pytest.mark.parametrize("iteration", [1, 2, 4, 5])
def test_annealed_outer_loss_matches_the_reference(case, iteration):
    """The engine's annealed loss and meta-gradient equal the reference's ``sum_j w_j L_j`` with
    weights written out by hand (2 steps, 2 epochs of 2 iterations, so d = 1/4)."""
    rule, init = MLP_CASES[case]
    learner = build_engine(_mlp(), rule, init=init)
    learner.multi_step_loss, learner.multi_step_epochs, learner.epoch_iterations = "annealed", 2, 2
    randomise(learner)
    batch = regression_batch()
    by_hand = {1: (0.5, 0.5), 2: (0.5, 0.5), 4: (0.25, 0.75), 5: (0.0, 1.0)}[iteration]
    spec = Spec(**{**spec_for(rule, init=init).__dict__, "step_weights": by_hand})
    out = learner(batch, iteration=iteration)
    tensors = copy_meta_tensors(learner)
    ref = reference_meta_loss(learner.model, spec, tensors, tuple(batch))
    torch.testing.assert_close(out.loss, ref.loss, rtol=RTOL, atol=0)
    names = [n for n, p in learner.named_parameters() if p.requires_grad]
    params = dict(learner.named_parameters())
    mine = torch.autograd.grad(out.loss, [params[n] for n in names], allow_unused=True)
    theirs = torch.autograd.grad(ref.loss, [tensors[n] for n in names], allow_unused=True)
    for name, a, b in zip(names, mine, theirs, strict=True):
        if a is None or b is None:
            assert a is None and b is None, name
            continue
        torch.testing.assert_close(a, b, rtol=RTOL, atol=RTOL * float(b.abs().max()))
    # The weights matter: the last-step loss alone differs unless only the last step counts.
    last = reference_meta_loss(learner.model, spec_for(rule, init=init), tensors, tuple(batch))
    assert torch.isclose(out.loss, last.loss, rtol=1e-12).item() == (iteration == 5)


def test_the_default_and_true_keep_their_meaning():
    rule = {"name": "alfa", "generator_init": "official"}
    learner = build_engine(_mlp(), rule)
    randomise(learner)
    batch = regression_batch()
    tensors = copy_meta_tensors(learner)
    last = reference_meta_loss(learner.model, spec_for(rule), tensors, tuple(batch)).loss
    mean = reference_meta_loss(
        learner.model, spec_for(rule, multi_step_loss=True), tensors, tuple(batch)
    ).loss
    torch.testing.assert_close(learner(batch, iteration=9).loss, last, rtol=RTOL, atol=0)
    learner.multi_step_loss = True
    torch.testing.assert_close(learner(batch, iteration=9).loss, mean, rtol=RTOL, atol=0)
    assert not torch.isclose(last, mean)


def test_config_keys():
    config = load_config(None, ["meta.multi_step_loss=annealed", "meta.epoch_iterations=7"])
    assert config.meta.multi_step_loss == "annealed" and config.meta.epoch_iterations == 7
    assert config.meta.multi_step_epochs == 15
    assert load_config(None, ["meta.multi_step_loss=true"]).meta.multi_step_loss is True
    assert load_config(None).meta.multi_step_loss is False
    with pytest.raises(ConfigError, match=r"'meta\.multi_step_loss'"):
        load_config(None, ["meta.multi_step_loss=annealing"])
    with pytest.raises(ConfigError, match=r"'meta\.multi_step_epochs'"):
        load_config(None, ["meta.multi_step_epochs=0"])


def test_training_passes_each_iteration_to_the_outer_loss(tmp_path, monkeypatch):
    """``alfa train`` hands the meta-iteration to the learner (what the annealed weights read)."""
    from alfa.engine.meta_learner import MetaLearner
    from alfa.runs.train import train
    from metahelpers import TINY

    seen: list[int] = []
    forward = MetaLearner.forward

    def spy(self, batch, **kwargs):
        if kwargs.get("keep_graph", True):
            seen.append(kwargs.get("iteration", -1))
        return forward(self, batch, **kwargs)

    monkeypatch.setattr(MetaLearner, "forward", spy)
    overrides = [*TINY, "train.iterations=4", "meta.multi_step_loss=annealed"]
    train(load_config(None, overrides), tmp_path / "run", progress=False)
    assert seen == [1, 2, 3, 4]
