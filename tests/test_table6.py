"""Table 6 recipes: each row differs from its neighbour only in the switch its name changes."""

from __future__ import annotations

import pytest
import torch

from alfa.config import Config, config_to_dict, leaf_keys
from alfa.engine.inner_loop import inner_loop
from alfa.engine.losses import mse
from alfa.paper.recipes import ABLATIONS, paper_config
from alfa.rules import ALFA, LearnedFixed
from alfa.runs.build import build_learner

ROWS = [m for m in ABLATIONS if m.split("-")[0] in ("maml", "random")]
SWAPS = {
    0: {"maml": "random"},
    1: {"alpha": "beta"},
    2: {"fixed": "adaptive"},
    3: {"step": "layer"},
}


def _config(method: str) -> Config:
    return paper_config("table6", "mini_imagenet", "mini_imagenet", "conv4", 5, 5, method)


def _neighbours() -> list[tuple[str, str, int]]:
    pairs = []
    for row in ROWS:
        parts = row.split("-")
        for position, swap in SWAPS.items():
            if parts[position] in swap:
                other = parts.copy()
                other[position] = swap[parts[position]]
                pairs.append((row, "-".join(other), position))
    return pairs


def _meta_tensors(method: str) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Every parameter and buffer of the built learner: name -> (shape, meta-learned)."""
    learner = build_learner(_config(method).replace(seed=0), task="classification", in_channels=3)
    out = {n: (tuple(p.shape), p.requires_grad) for n, p in learner.named_parameters()}
    out.update({n: (tuple(b.shape), False) for n, b in learner.named_buffers()})
    return out


def _diff(a: dict, b: dict) -> dict[str, tuple]:
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def test_sixteen_rows_and_every_neighbour_pair():
    assert len(ROWS) == 16
    pairs = {frozenset(p[:2]) for p in _neighbours()}
    assert len(pairs) == len(_neighbours()) == 16 * 4 // 2  # each row has 4 neighbours


EXPECTED_KEYS = {
    0: {"meta.init"},
    1: {"rule.learn_alpha", "rule.learn_beta", "rule.generate"},
    2: {"rule.name"},
    3: {"rule.per_step", "rule.per_layer"},
}


@pytest.mark.parametrize("row, other, position", _neighbours())
def test_neighbouring_rows_differ_in_their_switch_only(row, other, position):
    a, b = leaf_keys(config_to_dict(_config(row))), leaf_keys(config_to_dict(_config(other)))
    changed = {k for k in a if a[k] != b[k]} - {"name"}
    assert changed == EXPECTED_KEYS[position]
    assert a["rule.per_element_decay"] is False


N = 10  # adapted tensors of the 4-CONV (5 weights, 5 biases)
S = 5


def _generator(width: int) -> dict[str, tuple[tuple[int, ...], bool]]:
    return {
        "rule.generator.net.0.weight": ((2 * N, 2 * N), True),
        "rule.generator.net.0.bias": ((2 * N,), True),
        "rule.generator.net.2.weight": ((width, 2 * N), True),
        "rule.generator.net.2.bias": ((width,), True),
    }


@pytest.mark.parametrize("init", ["maml", "random"])
@pytest.mark.parametrize("which", ["alpha", "beta"])
def test_the_meta_parameters_of_each_pair(init, which):
    """The built learners' parameters and buffers differ exactly as the switch says."""
    rows = {
        (k, lay): _meta_tensors(f"{init}-{which}-{k}-{lay}")
        for k in ("fixed", "adaptive")
        for lay in ("step", "layer")
    }
    learned, constant = ("alpha0", "beta0") if which == "alpha" else ("beta0", "alpha0")
    for layout, shape in (("step", (S, 1)), ("layer", (1, N))):
        fixed = rows[("fixed", layout)]
        assert fixed[f"rule.{learned}.value"] == (shape, True)
        assert fixed[f"rule.{constant}.value"] == (shape, False)
        assert not any(".decays." in n for n in fixed)
        # fixed -> adaptive: the generator alone, one output per layer or one for all layers.
        width = 1 if layout == "step" else N
        assert _diff(fixed, rows[("adaptive", layout)]) == {
            k: (None, v) for k, v in _generator(width).items()
        }
    # step -> layer: the tables' layout (and the generator's output width) only.
    for kind in ("fixed", "adaptive"):
        changed = _diff(rows[(kind, "step")], rows[(kind, "layer")])
        expected = {f"rule.{learned}.value", f"rule.{constant}.value"}
        if kind == "adaptive":
            expected |= {"rule.generator.net.2.weight", "rule.generator.net.2.bias"}
        assert set(changed) == expected
    # alpha -> beta: which table is meta-learned; maml -> random: the base learner's trainability.
    other = _meta_tensors(f"{init}-{'beta' if which == 'alpha' else 'alpha'}-fixed-step")
    assert set(_diff(rows[("fixed", "step")], other)) == {"rule.alpha0.value", "rule.beta0.value"}
    swapped = _meta_tensors(f"{'random' if init == 'maml' else 'maml'}-{which}-fixed-step")
    changed = _diff(rows[("fixed", "step")], swapped)
    assert changed and all(k.startswith("model.") for k in changed)
    assert all(a[0] == b[0] and a[1] != b[1] for a, b in changed.values())


def _history(rule, steps: int = 3):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    from alfa.engine.functional import FunctionalModel

    functional = FunctionalModel(model)
    params = {k: v.unsqueeze(0).expand(2, *v.shape) for k, v in functional.initial().items()}
    x = torch.randn(2, 5, 1)
    _, history = inner_loop(
        functional, rule, params, x, torch.sin(x), mse, steps, create_graph=False
    )
    return history


def _rule(**kw):
    names, shapes = ["0.weight", "0.bias", "2.weight", "2.bias"], [(4, 1), (4,), (1, 4), (1,)]
    torch.manual_seed(1)
    rule = ALFA(names, [torch.Size(s) for s in shapes], 3, generator_init="official", **kw)
    return rule


def test_adaptive_per_step_shares_the_generated_value_across_layers():
    history = _history(_rule(per_layer=False, generate=("alpha",), learn_beta=False))
    alphas = torch.stack([h.alpha for h in history])  # [S, T, N]
    assert torch.equal(alphas, alphas[..., :1].expand_as(alphas))
    assert not torch.allclose(alphas[0], alphas[1])  # ... and it changes from step to step
    assert not torch.allclose(alphas[:, 0], alphas[:, 1])  # ... and from task to task


def test_adaptive_per_layer_holds_the_step_zero_values():
    history = _history(_rule(per_step=False, generate=("beta",), learn_alpha=False))
    betas = torch.stack([h.beta for h in history])
    assert torch.equal(betas, betas[:1].expand_as(betas))
    assert not torch.allclose(betas[0, :, 0], betas[0, :, 1])  # differs across layers
    assert not torch.allclose(betas[0, 0], betas[0, 1])  # and across tasks


def test_per_step_off_needs_the_inner_loop_from_step_zero():
    rule = _rule(per_step=False)
    with pytest.raises(RuntimeError, match="step 0"):
        rule.hyperparameters(
            1,
            {n: torch.zeros(2, *s) for n, s in zip(rule.names, rule.shapes, strict=True)},
            {n: torch.zeros(2, *s) for n, s in zip(rule.names, rule.shapes, strict=True)},
        )


def test_per_element_decay_is_a_switch_of_both_learned_rules():
    shapes = [torch.Size((3, 2)), torch.Size((3,))]
    for cls in (ALFA, LearnedFixed):
        off = cls(["w", "b"], shapes, 2, lr=0.1, weight_decay=0.5)
        on = cls(["w", "b"], shapes, 2, lr=0.1, weight_decay=0.5, per_element_decay=True)
        assert off.decay("w") is None and not list(off.decays.parameters())
        assert [tuple(p.shape) for p in on.decays.parameters()] == [(3, 2), (3,)]
        assert torch.equal(on.decay("b"), torch.full((3,), 0.05))
        assert torch.equal(on.beta0.value, torch.ones_like(on.beta0.value))
        assert torch.allclose(off.beta0.value, torch.full_like(off.beta0.value, 0.05))


@pytest.mark.parametrize("recompute", [False, True])
def test_held_values_match_the_reference_with_and_without_recompute(recompute):
    """Generated values held from step 0 (per_step off) carry their graph into every later
    step: the meta-gradient equals the per-task reference's, also when each step's graph is
    rebuilt during the backward (train.recompute)."""
    from reference_impl import copy_meta_tensors, reference_meta_loss
    from test_reference import RTOL, _mlp, build_engine, randomise, regression_batch, spec_for

    rule = {"name": "alfa", "per_step": False, "generator_init": "official"}
    learner = build_engine(_mlp(), rule, steps=3)
    learner.recompute = recompute
    randomise(learner)
    batch = regression_batch()
    names = [n for n, p in learner.named_parameters() if p.requires_grad]
    params = dict(learner.named_parameters())
    loss = learner(batch).loss
    mine = torch.autograd.grad(loss, [params[n] for n in names])
    tensors = copy_meta_tensors(learner)
    ref = reference_meta_loss(learner.model, spec_for(rule, steps=3), tensors, tuple(batch))
    theirs = torch.autograd.grad(ref.loss, [tensors[n] for n in names])
    torch.testing.assert_close(loss, ref.loss, rtol=RTOL, atol=0)
    for name, a, b in zip(names, mine, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=name)
