"""The engine against an independent per-task reference (tests/reference_impl.py), in float64.

Meta-loss, per-task query losses, generated hyperparameters and the meta-gradient of every
meta-parameter must agree to ``rtol = 1e-9`` for MAML, learned-fixed, ALFA (every switch, both
generator initialisations), ALFA with a random initialisation and L2F, first and second order, on
an MLP, a 4-CONV and a ResNet12 in both BatchNorm modes. The rule's parameters are randomised
(seeded) so that a wrong generator input, output order, layer index or detach changes the numbers.

Every engine is built by :func:`build_engine`; if ``MetaLearner`` takes an ``engine=`` keyword,
every test runs once per engine path.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from alfa.config import RuleConfig
from alfa.engine.functional import FunctionalModel
from alfa.engine.meta_learner import MetaLearner
from alfa.models.conv4 import Conv4
from alfa.models.mlp import MLP
from alfa.models.resnet12 import ResNet12
from alfa.rules import build_rule
from alfa.typing import TaskBatch
from reference_impl import RefOutput, Spec, adapted_names, copy_meta_tensors, reference_meta_loss

F64 = torch.float64
RTOL = 1e-9
STEPS = 2

ENGINES: tuple[str | None, ...] = (
    ("generic", "fast")
    if "engine" in inspect.signature(MetaLearner.__init__).parameters
    else (None,)
)


def build_engine(
    model: torch.nn.Module,
    rule: dict,
    *,
    task: str = "regression",
    init: str = "learned",
    steps: int = STEPS,
    first_order: bool = False,
    multi_step_loss: bool = False,
    engine: str | None = None,
) -> MetaLearner:
    """The one place where the tests construct the engine (float64)."""
    names = FunctionalModel(model).names
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    built = build_rule(RuleConfig(**rule), names, shapes, steps)
    kwargs = {} if engine is None else {"engine": engine}
    learner = MetaLearner(
        model,
        built,
        task=task,  # type: ignore[arg-type]
        steps=steps,
        first_order=first_order,
        multi_step_loss=multi_step_loss,
        learn_init=init == "learned",
        **kwargs,
    )
    return learner.to(F64)


def spec_for(
    rule: dict,
    *,
    task: str = "regression",
    init: str = "learned",
    steps: int = STEPS,
    first_order: bool = False,
    multi_step_loss: bool = False,
) -> Spec:
    """The reference's switches for the same method (read from the rule's config, not the rule)."""
    cfg = RuleConfig(**rule)
    return Spec(
        rule=cfg.name,
        steps=steps,
        first_order=first_order,
        task=task,
        lr=cfg.lr,
        generator_input=cfg.generator_input,
        generate=tuple(cfg.generate),
        generator_layers=cfg.generator_layers,
        clip=(float(cfg.clip[0]), float(cfg.clip[1])) if cfg.clip else None,
        state_encoding=cfg.state_encoding,
        state_statistics=tuple(cfg.state_statistics),
        generator_output=cfg.generator_output,
        per_element_decay=cfg.per_element_decay,
        detach_gradient_state=cfg.detach_gradient_state,
        l2f=cfg.l2f,
        multi_step_loss=multi_step_loss,
        per_step=cfg.per_step,
        per_layer=cfg.per_layer,
    )


def randomise(learner: MetaLearner, seed: int = 7) -> None:
    """Seeded non-trivial values for every rule tensor and the BatchNorm affine parameters:
    per-step, per-layer tables that differ entry by entry, a generator (and attenuator) far from
    its initialisation (so the unit init's last layer is no longer 0), decays that matter."""
    g = torch.Generator().manual_seed(seed)

    def rand(t: torch.Tensor) -> torch.Tensor:
        return torch.rand(t.shape, generator=g, dtype=F64)

    def randn(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=g, dtype=F64)

    adapted = {f"model.{n}" for n in adapted_names(learner.model)}
    tensors = dict(learner.named_parameters())
    tensors.update(dict(learner.named_buffers()))
    random_init = any(".decays." in n for n in tensors)
    with torch.no_grad():
        for name, t in tensors.items():
            if name.endswith("alpha0.value"):
                t.copy_(0.05 * (0.5 + rand(t)))
            elif name.endswith("beta0.value"):
                t.copy_(0.5 + rand(t) if random_init else 0.05 * rand(t))
            elif ".decays." in name:
                t.copy_(0.05 * rand(t))
            elif ".generator." in name or ".attenuator." in name:
                t.add_(0.3 * randn(t))
            elif name.startswith("model.") and name not in adapted:  # BatchNorm affine
                t.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * randn(t))


def regression_batch(tasks: int = 2, shots: int = 4, query: int = 5, seed: int = 1) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(tasks, shots + query, 1, generator=g, dtype=F64) * 10 - 5
    amplitude = torch.rand(tasks, 1, 1, generator=g, dtype=F64) * 4.9 + 0.1
    phase = torch.rand(tasks, 1, 1, generator=g, dtype=F64) * math.pi
    y = amplitude * torch.sin(x - phase)
    return TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:])


def image_batch(
    tasks: int = 2, ways: int = 3, shots: int = 1, query: int = 2, size: int = 16, seed: int = 1
) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)

    def labels(per_class: int) -> torch.Tensor:
        rows = [torch.randperm(ways, generator=g).repeat(per_class) for _ in range(tasks)]
        return torch.stack(rows)

    sy, qy = labels(shots), labels(query)
    sx = torch.randn(tasks, ways * shots, 1, size, size, generator=g, dtype=F64)
    qx = torch.randn(tasks, ways * query, 1, size, size, generator=g, dtype=F64)
    return TaskBatch(sx, sy, qx, qy)


def meta_gradients(
    learner: MetaLearner, batch: TaskBatch
) -> tuple[torch.Tensor, dict[str, torch.Tensor], object]:
    names = [n for n, p in learner.named_parameters() if p.requires_grad]
    params = dict(learner.named_parameters())
    out = learner(batch)
    grads = torch.autograd.grad(out.loss, [params[n] for n in names], allow_unused=True)
    return out.loss.detach(), _fill(names, grads, params), out


def reference_gradients(
    learner: MetaLearner, spec: Spec, batch: TaskBatch, **kwargs
) -> tuple[RefOutput, dict[str, torch.Tensor]]:
    tensors = copy_meta_tensors(learner)
    names = [n for n, t in tensors.items() if t.requires_grad]
    ref = reference_meta_loss(learner.model, spec, tensors, tuple(batch), **kwargs)
    grads = torch.autograd.grad(ref.loss, [tensors[n] for n in names], allow_unused=True)
    return ref, _fill(names, grads, tensors)


def _fill(names, grads, like) -> dict[str, torch.Tensor]:
    return {
        n: torch.zeros_like(like[n]) if g is None else g for n, g in zip(names, grads, strict=True)
    }


_REFERENCE_CACHE: dict[str, tuple[dict[str, torch.Tensor], RefOutput, dict]] = {}


def _cached_reference(
    key: str | None, learner: MetaLearner, spec: Spec, batch: TaskBatch
) -> tuple[RefOutput, dict[str, torch.Tensor]]:
    """The reference for ``key``, computed once for all engine paths (which are built from the
    same seeds: checked tensor by tensor before the cached result is reused)."""
    values = {k: v.detach() for k, v in copy_meta_tensors(learner).items()}
    if key is not None and key in _REFERENCE_CACHE:
        seen, ref, ref_grads = _REFERENCE_CACHE[key]
        if seen.keys() == values.keys() and all(torch.equal(seen[k], values[k]) for k in seen):
            return ref, ref_grads
    ref, ref_grads = reference_gradients(learner, spec, batch)
    if key is not None:
        _REFERENCE_CACHE[key] = (values, ref, ref_grads)
    return ref, ref_grads


def assert_matches_reference(
    learner: MetaLearner, spec: Spec, batch: TaskBatch, *, key: str | None = None
) -> None:
    """Engine == reference: loss, query losses, every meta-gradient, every generated
    hyperparameter. ``key`` names the case to share the reference across engine paths."""
    loss, grads, out = meta_gradients(learner, batch)
    ref, ref_grads = _cached_reference(key, learner, spec, batch)
    torch.testing.assert_close(loss, ref.loss.detach(), rtol=RTOL, atol=0)
    torch.testing.assert_close(out.query_losses, ref.query_losses, rtol=RTOL, atol=0)
    assert sorted(grads) == sorted(ref_grads)
    # Entries that are zero in exact arithmetic (a conv bias before BatchNorm) are rounding
    # noise on both sides: the absolute tolerance is relative to the largest meta-gradient.
    scale = max(float(g.abs().max()) for g in ref_grads.values())
    assert scale > 0
    for name, expected in ref_grads.items():
        torch.testing.assert_close(
            grads[name],
            expected,
            rtol=RTOL,
            atol=RTOL * scale,
            msg=lambda m, name=name: f"meta-gradient of {name}: {m}",
        )
    for step, hyper in enumerate(out.hyperparameters):  # the engine may not record them
        for task in range(batch.num_tasks):
            torch.testing.assert_close(hyper.alpha[task], ref.alphas[task][step], rtol=RTOL, atol=0)
            torch.testing.assert_close(hyper.beta[task], ref.betas[task][step], rtol=RTOL, atol=0)


DECAY = {"per_element_decay": True}
OFFICIAL = {"generator_init": "official"}

# name: (rule config, meta.init). ALFA cases use the official init unless they test the unit one;
# every case is randomised anyway.
MLP_CASES: dict[str, tuple[dict, str]] = {
    "maml": ({"name": "maml", "lr": 0.05}, "learned"),
    "learned_fixed": ({"name": "learned_fixed"}, "learned"),
    "learned_fixed_tied": (
        {"name": "learned_fixed", "per_step": False, "per_layer": False, "learn_alpha": False},
        "learned",
    ),
    "learned_fixed_per_step": ({"name": "learned_fixed", "per_layer": False}, "learned"),
    "alfa_unit": ({"name": "alfa"}, "learned"),
    "alfa_official": ({"name": "alfa", **OFFICIAL}, "learned"),
    "alfa_three_layers": ({"name": "alfa", "generator_layers": 3, **OFFICIAL}, "learned"),
    "alfa_three_layers_unit": ({"name": "alfa", "generator_layers": 3}, "learned"),
    "alfa_input_weights": ({"name": "alfa", "generator_input": "weights", **OFFICIAL}, "learned"),
    "alfa_input_gradients": (
        {"name": "alfa", "generator_input": "gradients", **OFFICIAL},
        "learned",
    ),
    "alfa_generate_alpha": ({"name": "alfa", "generate": ("alpha",), **OFFICIAL}, "learned"),
    "alfa_generate_beta": ({"name": "alfa", "generate": ("beta",), **OFFICIAL}, "learned"),
    "alfa_generate_none": ({"name": "alfa", "generate": ()}, "learned"),
    "alfa_per_layer_only": ({"name": "alfa", "per_step": False, **OFFICIAL}, "learned"),
    "alfa_clip": ({"name": "alfa", "clip": (-0.3, 0.4), **OFFICIAL}, "learned"),
    "alfa_bounded": ({"name": "alfa", "generator_output": "bounded", **OFFICIAL}, "learned"),
    "alfa_log_sign": ({"name": "alfa", "state_encoding": "log_sign", **OFFICIAL}, "learned"),
    "alfa_rms": ({"name": "alfa", "state_statistics": ("mean", "rms"), **OFFICIAL}, "learned"),
    "alfa_rms_weights_only": (
        {"name": "alfa", "state_statistics": ("mean", "rms"), "generator_input": "weights"},
        "learned",
    ),
    "alfa_rms_log_sign_not_detached": (
        {
            "name": "alfa",
            "state_statistics": ("mean", "rms"),
            "state_encoding": "log_sign",
            "detach_gradient_state": False,
            **OFFICIAL,
        },
        "learned",
    ),
    "alfa_bounded_log_sign_not_detached": (
        {
            "name": "alfa",
            "generator_output": "bounded",
            "state_encoding": "log_sign",
            "detach_gradient_state": False,
        },
        "learned",
    ),
    "alfa_not_detached": ({"name": "alfa", "detach_gradient_state": False, **OFFICIAL}, "learned"),
    "alfa_random_init": ({"name": "alfa", **DECAY, **OFFICIAL}, "random"),
    "alfa_random_init_unit": ({"name": "alfa", **DECAY}, "random"),
    "alfa_random_init_no_decay": ({"name": "alfa", **OFFICIAL}, "random"),
    "alfa_random_init_generate_alpha": (
        {"name": "alfa", "generate": ("alpha",), **DECAY, **OFFICIAL},
        "random",
    ),
    "learned_fixed_random_init": ({"name": "learned_fixed", **DECAY}, "random"),
    "learned_fixed_random_init_no_decay": ({"name": "learned_fixed"}, "random"),
    # Table 6's layouts: generated values shared by the layers, or held from step 0.
    "alfa_per_step_only": ({"name": "alfa", "per_layer": False, **OFFICIAL}, "learned"),
    "alfa_beta_per_layer_only": (
        {"name": "alfa", "per_step": False, "generate": ("beta",), **OFFICIAL},
        "learned",
    ),
    "alfa_alpha_per_step_only_random_init": (
        {"name": "alfa", "per_layer": False, "generate": ("alpha",), "learn_beta": False},
        "random",
    ),
    "maml_l2f": ({"name": "maml", "lr": 0.05, "l2f": True}, "learned"),
    "alfa_l2f": ({"name": "alfa", "l2f": True, **OFFICIAL}, "learned"),
    "alfa_random_init_l2f": ({"name": "alfa", "l2f": True, **DECAY, **OFFICIAL}, "random"),
}

# The convolutional backbones: every rule family, both BatchNorm modes, both orders.
CONV_CASES = ("maml", "learned_fixed", "alfa_official", "alfa_random_init", "maml_l2f", "alfa_l2f")


def _mlp(hidden=(5, 4)) -> MLP:
    torch.manual_seed(3)
    return MLP(hidden)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
@pytest.mark.parametrize("case", sorted(MLP_CASES))
def test_mlp_matches_reference(case, first_order, engine):
    rule, init = MLP_CASES[case]
    learner = build_engine(_mlp(), rule, init=init, first_order=first_order, engine=engine)
    randomise(learner)
    spec = spec_for(rule, init=init, first_order=first_order)
    assert_matches_reference(learner, spec, regression_batch(), key=f"mlp-{case}-{first_order}")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
@pytest.mark.parametrize(
    "case", ["maml", "learned_fixed", "alfa_unit", "alfa_random_init_unit", "alfa_l2f"]
)
def test_mlp_as_built_matches_reference(case, first_order, engine):
    """The defaults exactly as built (unit init: the generator outputs 1 at first)."""
    rule, init = MLP_CASES[case]
    learner = build_engine(_mlp(), rule, init=init, first_order=first_order, engine=engine)
    spec = spec_for(rule, init=init, first_order=first_order)
    assert_matches_reference(learner, spec, regression_batch())


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", ["maml", "alfa_official", "alfa_l2f"])
def test_multi_step_loss_matches_reference(case, engine):
    rule, init = MLP_CASES[case]
    learner = build_engine(_mlp(), rule, init=init, multi_step_loss=True, engine=engine)
    randomise(learner)
    spec = spec_for(rule, init=init, multi_step_loss=True)
    assert_matches_reference(learner, spec, regression_batch())


def _conv4(norm: str) -> Conv4:
    torch.manual_seed(4)
    return Conv4(3, in_channels=1, filters=8, image_size=16, norm=norm)


def _resnet12(norm: str) -> ResNet12:
    torch.manual_seed(5)
    return ResNet12(3, in_channels=1, channels=(4, 8, 8, 8), norm=norm)


BACKBONES = {"conv4": (_conv4, 16), "resnet12": (_resnet12, 12)}


def _backbone_params():
    """Every case on both backbones; on ResNet12 the rules whose code paths the 4-CONV and MLP
    cases already cover are marked slow (still run by default)."""
    slow = {("resnet12", "learned_fixed"), ("resnet12", "maml_l2f")}
    return [
        pytest.param(b, c, marks=pytest.mark.slow) if (b, c) in slow else pytest.param(b, c)
        for b in sorted(BACKBONES)
        for c in CONV_CASES
    ]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
@pytest.mark.parametrize("norm", ["transductive", "support"])
@pytest.mark.parametrize("backbone, case", _backbone_params())
def test_backbone_matches_reference(backbone, case, norm, first_order, engine):
    make, size = BACKBONES[backbone]
    rule, init = MLP_CASES[case]
    learner = build_engine(
        make(norm),
        rule,
        task="classification",
        init=init,
        first_order=first_order,
        engine=engine,
    )
    randomise(learner)
    spec = spec_for(rule, task="classification", init=init, first_order=first_order)
    key = f"{backbone}-{case}-{norm}-{first_order}"
    assert_matches_reference(learner, spec, image_batch(size=size), key=key)


def _flat_meta_parameters(learner: MetaLearner) -> list[str]:
    return [n for n, p in learner.named_parameters() if p.requires_grad]


@pytest.mark.parametrize("engine", ENGINES)
def test_detached_gradient_state_is_the_derivative_with_constant_means(engine):
    """Gradcheck of the default (detached) path: the engine's second-order meta-gradient equals
    the finite differences of the reference in which the generator's gradient means are frozen
    at their values at the evaluation point; and the detach matters here."""
    rule = {"name": "alfa", **OFFICIAL}
    learner = build_engine(_mlp((3,)), rule, engine=engine)
    randomise(learner)
    batch = regression_batch(shots=3, query=3)
    spec = spec_for(rule)
    _, grads, _ = meta_gradients(learner, batch)
    base = copy_meta_tensors(learner)
    frozen = reference_meta_loss(learner.model, spec, base, tuple(batch)).grad_means
    eps = 1e-6
    for name in _flat_meta_parameters(learner):
        numeric = torch.zeros_like(base[name])
        for index in range(base[name].numel()):
            values = []
            for sign in (1.0, -1.0):
                tensors = {k: v.detach().clone() for k, v in base.items()}
                tensors[name].view(-1)[index] += sign * eps
                out = reference_meta_loss(
                    learner.model, spec, tensors, tuple(batch), fixed_grad_means=frozen
                )
                values.append(float(out.loss.detach()))
            numeric.view(-1)[index] = (values[0] - values[1]) / (2 * eps)
        torch.testing.assert_close(
            grads[name], numeric, rtol=1e-5, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}"
        )
    # Differentiating through the means instead gives another meta-gradient.
    undetached = build_engine(_mlp((3,)), {**rule, "detach_gradient_state": False}, engine=engine)
    undetached.load_state_dict(learner.state_dict())
    _, other, _ = meta_gradients(undetached, batch)
    gen = [n for n in grads if ".generator." in n]
    assert max(float((grads[n] - other[n]).abs().max()) for n in gen) > 1e-6


def test_reference_sees_what_a_plausible_bug_changes():
    """The comparison has power: swapping the generator's input halves or its output halves,
    differentiating through the gradient means, or building L2F's gradient with a graph in first
    order each change the reference's meta-loss or meta-gradient far beyond RTOL."""
    rule = {"name": "alfa", "l2f": True, **OFFICIAL}
    learner = build_engine(_mlp(), rule, first_order=False)
    randomise(learner)
    batch = regression_batch()
    n = len(adapted_names(learner.model))

    def run(spec: Spec, edit=None) -> tuple[float, torch.Tensor]:
        tensors = copy_meta_tensors(learner)
        if edit is not None:
            with torch.no_grad():
                edit(tensors)
        names = [k for k, t in tensors.items() if t.requires_grad]
        ref = reference_meta_loss(learner.model, spec, tensors, tuple(batch))
        grads = torch.autograd.grad(ref.loss, [tensors[k] for k in names], allow_unused=True)
        flat = torch.cat([g.flatten() for g in grads if g is not None])
        return float(ref.loss.detach()), flat

    def swap_inputs(t):
        w = t["rule.inner.generator.net.0.weight"]
        w.copy_(torch.cat([w[:, n:], w[:, :n]], dim=1))

    def swap_outputs(t):
        for key in ("rule.inner.generator.net.2.weight", "rule.inner.generator.net.2.bias"):
            t[key].copy_(torch.cat([t[key][n:], t[key][:n]]))

    def differs(a, b) -> bool:
        return abs(a[0] - b[0]) > 1e3 * RTOL * abs(b[0]) or not torch.allclose(
            a[1], b[1], rtol=1e3 * RTOL, atol=0
        )

    for first_order in (False, True):
        spec = spec_for(rule, first_order=first_order)
        good = run(spec)
        assert differs(run(spec, swap_inputs), good)
        assert differs(run(spec, swap_outputs), good)
        if not first_order:
            undetached = Spec(**{**spec.__dict__, "detach_gradient_state": False})
            assert differs(run(undetached), good)
        else:
            no_graph = Spec(**{**spec.__dict__, "l2f_create_graph": False})
            assert differs(run(no_graph), good)
