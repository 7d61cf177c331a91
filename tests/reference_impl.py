"""An independent, official-style reference of the meta-objective, for the tests only.

Written from the paper and from what the official ALFA code does (shared/docs/reference.md, A.2
and A.5), sharing no code with the engine: it imports none of ``alfa.engine.inner_loop``,
``alfa.engine.meta_learner``, ``alfa.rules``, ``alfa.engine.functional`` or ``alfa.engine.losses``.
It only calls the base learner (an ``nn.Module``) through ``torch.func.functional_call`` with a
dictionary of tensors, one task at a time, in a plain Python loop (no ``vmap``, no task axis).

For every task and inner step ``j``::

    loss  = support loss at theta_j
    g_s   = autograd.grad(loss, theta_j)                      # no graph: the learning state
    g     = autograd.grad(loss, theta_j, create_graph=not first_order)
    alpha, beta = rule(j, theta_j, g_s)                       # one value per adapted tensor
    theta_{j+1} = (1 - beta * decay) * theta_j - alpha * g

and the outer loss is the mean over tasks of the query loss after the last step (or of the mean
over steps with ``multi_step_loss``, or of ``sum_j w_j L_j`` with ``step_weights``). The rules:

* ``maml``: ``alpha = lr``, ``beta = 0``.
* ``learned_fixed``: ``alpha = alpha0[j]``, ``beta = beta0[j]`` (per-step, per-layer tables).
* ``alfa``: ``alpha = alpha0[j] * g_alpha(tau)``, ``beta = beta0[j] * g_beta(tau)``, where
  ``tau = [mean of each weight tensor (with graph), mean of each gradient tensor (constants)]``
  and ``g`` is an MLP of 2 or 3 linear layers with ReLUs between them. Without ``per_layer``
  ``g`` gives one value per hyperparameter for every layer; without ``per_step`` the values
  ``g`` gives at step 0 hold for every step.
* with ``per_element_decay`` (ALFA or learned-fixed) ``decay`` is a meta-learned per-element
  tensor.
* ``l2f`` on top of any of them: before the first step, the initial weights are multiplied by
  ``sigmoid(W2 relu(W1 m + b1) + b2)``, ``m`` the layer-wise means of the support gradients there.

The meta-parameters are read by name from a dictionary of tensors (the names of an engine-built
``MetaLearner``'s ``named_parameters()`` and ``named_buffers()``), so the same numbers are used on
both sides and the meta-gradient can be taken w.r.t. that dictionary's tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RefOutput", "Spec", "adapted_names", "copy_meta_tensors", "reference_meta_loss"]


@dataclass(frozen=True)
class Spec:
    """What the reference computes (the switches of the method, not its numbers).

    Args:
        rule: ``"maml"``, ``"learned_fixed"`` or ``"alfa"``.
        steps: inner steps S.
        first_order: the update's gradient enters as a constant (no second-order terms).
        task: ``"regression"`` (MSE over all output elements) or ``"classification"``
            (cross-entropy averaged over the query set).
        lr: MAML's fixed inner learning rate (the tables of the other rules are tensors).
        generator_input: ``"both"``, ``"weights"`` or ``"gradients"``.
        state_statistics: ``("mean",)`` or ``("mean", "rms")``: per input, the layer means
            (and then the layer root mean squares, sqrt(mean(t^2) + 1e-12)).
        generate: which of ``"alpha"``/``"beta"`` the generator produces (its output is laid out
            in that order, ``N`` values each).
        generator_layers: 2 or 3 linear layers.
        clip: optional bounds on the generator's outputs.
        state_encoding: ``"raw"`` or ``"log_sign"`` (each state value x becomes
            (log|x| / 10, sign x), or (-1, e^10 x) below e^-10).
        generator_output: ``"linear"`` or ``"bounded"`` (2 * sigmoid of the last layer).
        per_element_decay: the random-init variant's per-element weight-decay tensors.
        detach_gradient_state: the official behaviour, gradient means are constants; False takes
            them from the update's gradient (with its graph in second order).
        l2f: L2F's attenuation of the initial weights.
        l2f_create_graph: whether the gradient that feeds L2F's attenuator keeps its graph;
            ``None`` means always (the official code's behaviour, and the engine's).
        multi_step_loss: average the query loss after every step instead of the last only.
        step_weights: weigh the query loss after step ``j`` by ``step_weights[j]`` instead.
        per_step, per_layer: whether the generated values differ across steps / layers.
    """

    rule: str
    steps: int = 2
    first_order: bool = False
    task: str = "regression"
    lr: float = 0.01
    generator_input: str = "both"
    state_statistics: tuple[str, ...] = ("mean",)
    generate: tuple[str, ...] = ("alpha", "beta")
    generator_layers: int = 2
    clip: tuple[float, float] | None = None
    state_encoding: str = "raw"
    generator_output: str = "linear"
    per_element_decay: bool = False
    detach_gradient_state: bool = True
    l2f: bool = False
    l2f_create_graph: bool | None = None
    multi_step_loss: bool = False
    step_weights: tuple[float, ...] | None = None
    per_step: bool = True
    per_layer: bool = True


@dataclass
class RefOutput:
    """The reference's outer loss and, per task, what it saw along the way."""

    loss: Tensor
    query_losses: Tensor  # [T], after the last step, detached
    alphas: list[list[Tensor]]  # [task][step] -> [N], detached
    betas: list[list[Tensor]]  # [task][step] -> [N] (before the per-element decay), detached
    grad_means: list[list[Tensor | None]]  # [task][step] -> the gradient part of the state, or None


def _is_norm(module: nn.Module) -> bool:
    if getattr(module, "is_normalisation", False) is True:
        return True
    return isinstance(
        module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)
    )


def adapted_names(model: nn.Module) -> list[str]:
    """The base learner's tensors adapted in the inner loop: every parameter not owned by a
    normalisation layer (the official code never adapts BatchNorm's affine parameters)."""
    frozen = set()
    for prefix, module in model.named_modules():
        if _is_norm(module):
            for name, _ in module.named_parameters(recurse=False):
                frozen.add(f"{prefix}.{name}" if prefix else name)
    return [name for name, _ in model.named_parameters() if name not in frozen]


def copy_meta_tensors(learner: nn.Module) -> dict[str, Tensor]:
    """Detached copies of every parameter and buffer of ``learner``, by name; copies of the
    parameters that require a gradient require one too (they are the leaves to differentiate)."""
    out: dict[str, Tensor] = {}
    for name, p in learner.named_parameters():
        out[name] = p.detach().clone().requires_grad_(p.requires_grad)
    for name, b in learner.named_buffers():
        out[name] = b.detach().clone()
    return out


def _loss(task: str, out: Tensor, target: Tensor) -> Tensor:
    if task == "regression":
        return ((out - target) ** 2).mean()
    return F.cross_entropy(out, target)


def _table(value: Tensor, step: int, n: int) -> Tensor:
    """Row ``step`` of a ``[steps or 1, n or 1]`` table (steps past the end reuse the last row)."""
    row = value[min(step, value.shape[0] - 1)]
    return row if row.shape[0] == n else row.expand(n)


def _generator(tensors: dict[str, Tensor], prefix: str, layers: int, state: Tensor) -> Tensor:
    keys = {k for k in tensors if k.startswith(prefix)}
    expected = {f"{prefix}{2 * i}.{w}" for i in range(layers) for w in ("weight", "bias")}
    if keys != expected:
        raise AssertionError(f"generator tensors {sorted(keys)} are not {layers} linear layers")
    h = state
    for i in range(layers):
        h = tensors[f"{prefix}{2 * i}.weight"] @ h + tensors[f"{prefix}{2 * i}.bias"]
        if i < layers - 1:
            h = torch.relu(h)
    return h


def _log_sign(state: Tensor) -> Tensor:
    """Value by value, with Python's math for the branch (no vectorised masks)."""
    magnitudes, signs = [], []
    for x in state:
        if abs(x.item()) >= math.exp(-10):
            magnitudes.append(torch.log(torch.abs(x)) / 10)
            signs.append(torch.ones_like(x) if x.item() > 0 else -torch.ones_like(x))
        else:
            magnitudes.append(-torch.ones_like(x))
            signs.append(x * math.exp(10))
    return torch.stack(magnitudes + signs)


def _hyperparameters(
    spec: Spec,
    tensors: dict[str, Tensor],
    prefix: str,
    step: int,
    theta: list[Tensor],
    grad_means: Tensor | None,
    held: dict[str, Tensor],
) -> tuple[Tensor, Tensor]:
    n = len(theta)
    ref = theta[0]
    if spec.rule == "maml":
        alpha = torch.full((n,), spec.lr, dtype=ref.dtype, device=ref.device)
        return alpha, torch.zeros_like(alpha)
    if spec.rule not in ("learned_fixed", "alfa"):
        raise ValueError(f"unknown rule {spec.rule!r}")
    alpha = _table(tensors[f"{prefix}alpha0.value"], step, n)
    beta = _table(tensors[f"{prefix}beta0.value"], step, n)
    if spec.rule == "alfa" and spec.generate:
        parts = []
        if spec.generator_input in ("both", "weights"):
            parts.append(torch.stack([t.mean() for t in theta]))
            if "rms" in spec.state_statistics:
                parts.append(torch.stack([torch.sqrt((t * t).mean() + 1e-12) for t in theta]))
        if spec.generator_input in ("both", "gradients"):
            assert grad_means is not None
            parts.append(grad_means)
        if spec.per_step or step == 0:
            state = torch.cat(parts)
            if spec.state_encoding == "log_sign":
                state = _log_sign(state)
            out = _generator(tensors, f"{prefix}generator.net.", spec.generator_layers, state)
            if spec.generator_output == "bounded":
                out = 2 / (1 + torch.exp(-out))
            if spec.clip is not None:
                out = out.clamp(spec.clip[0], spec.clip[1])
            held["out"] = out
        out = held["out"]
        order = [h for h in ("alpha", "beta") if h in spec.generate]
        width = n if spec.per_layer else 1
        assert out.shape == (width * len(order),)
        for k, which in enumerate(order):
            part = out[k * width : (k + 1) * width].expand(n)
            if which == "alpha":
                alpha = alpha * part
            else:
                beta = beta * part
    return alpha, beta


def reference_meta_loss(
    model: nn.Module,
    spec: Spec,
    tensors: dict[str, Tensor],
    batch: tuple[Tensor, Tensor, Tensor, Tensor],
    *,
    fixed_grad_means: list[list[Tensor | None]] | None = None,
) -> RefOutput:
    """The outer loss of a meta-batch ``(support_x, support_y, query_x, query_y)``, each with a
    leading task axis, computed task by task.

    Args:
        model: the base learner; only its structure is used (every tensor comes from
            ``tensors``, keyed ``model.<name>``).
        tensors: meta-parameters and buffers by the engine's names (:func:`copy_meta_tensors`).
        fixed_grad_means: use these ``[task][step]`` constants as the gradient part of the
            generator's input instead of computing it (for finite differences of the official
            detached path: a function whose derivative is the detached meta-gradient).
    """
    names = adapted_names(model)
    n = len(names)
    rule = "rule.inner." if spec.l2f else "rule."
    shared = {
        k[len("model.") :]: v
        for k, v in tensors.items()
        if k.startswith("model.") and k[len("model.") :] not in names
    }
    support_norm = getattr(model, "norm_mode", "transductive") == "support"

    def run(theta: dict[str, Tensor], x: Tensor, reference: Tensor | None = None) -> Tensor:
        kwargs = {} if reference is None else {"reference": reference}
        return torch.func.functional_call(model, {**theta, **shared}, (x,), kwargs)

    support_x, support_y, query_x, query_y = batch
    objectives, query_losses, alphas, betas, means_log = [], [], [], [], []
    for i in range(support_x.shape[0]):
        sx, sy, qx, qy = support_x[i], support_y[i], query_x[i], query_y[i]

        def support_loss(theta: dict[str, Tensor], sx: Tensor = sx, sy: Tensor = sy) -> Tensor:
            return _loss(spec.task, run(theta, sx), sy)

        def query_loss(
            theta: dict[str, Tensor], sx: Tensor = sx, qx: Tensor = qx, qy: Tensor = qy
        ) -> Tensor:
            out = run(theta, qx, sx if support_norm else None)
            return _loss(spec.task, out, qy)

        theta = {}
        for name in names:
            init = tensors[f"model.{name}"]
            # A fixed (random) initialisation is a constant: a fresh leaf to differentiate at.
            theta[name] = init if init.requires_grad else init.detach().requires_grad_(True)

        if spec.l2f:
            graph = True if spec.l2f_create_graph is None else spec.l2f_create_graph
            grads = torch.autograd.grad(
                support_loss(theta), [theta[k] for k in names], create_graph=graph
            )
            m = torch.stack([g.mean() for g in grads])
            h = torch.relu(
                tensors["rule.attenuator.0.weight"] @ m + tensors["rule.attenuator.0.bias"]
            )
            gamma = torch.sigmoid(
                tensors["rule.attenuator.2.weight"] @ h + tensors["rule.attenuator.2.bias"]
            )
            theta = {name: theta[name] * gamma[k] for k, name in enumerate(names)}

        uses_grad_state = (
            spec.rule == "alfa" and bool(spec.generate) and spec.generator_input != "weights"
        )
        task_alphas, task_betas, task_means, step_losses = [], [], [], []
        held: dict[str, Tensor] = {}
        for step in range(spec.steps):
            loss = support_loss(theta)
            current = [theta[name] for name in names]
            state_grads = None
            if uses_grad_state and spec.detach_gradient_state:
                state_grads = torch.autograd.grad(loss, current, retain_graph=True)
            grads = torch.autograd.grad(loss, current, create_graph=not spec.first_order)
            grad_means = None
            if uses_grad_state:
                source = state_grads if spec.detach_gradient_state else grads
                grad_means = torch.stack([g.mean() for g in source])
                if "rms" in spec.state_statistics:
                    rms = torch.stack([torch.sqrt((g * g).mean() + 1e-12) for g in source])
                    grad_means = torch.cat([grad_means, rms])
                if fixed_grad_means is not None:
                    grad_means = fixed_grad_means[i][step]
            alpha, beta = _hyperparameters(spec, tensors, rule, step, current, grad_means, held)
            new = {}
            for k, name in enumerate(names):
                decay = beta[k]
                if spec.per_element_decay:
                    decay = decay * tensors[f"{rule}decays.{k}"]
                new[name] = theta[name] - decay * theta[name] - alpha[k] * grads[k]
            theta = new
            task_alphas.append(alpha.detach())
            task_betas.append(beta.detach())
            task_means.append(None if grad_means is None else grad_means.detach())
            if spec.multi_step_loss or spec.step_weights is not None:
                step_losses.append(query_loss(theta))
        final = query_loss(theta)
        if spec.step_weights is not None:
            objectives.append(
                sum(w * q for w, q in zip(spec.step_weights, step_losses, strict=True))
            )
        elif spec.multi_step_loss:
            objectives.append(torch.stack(step_losses).mean())
        else:
            objectives.append(final)
        query_losses.append(final.detach())
        alphas.append(task_alphas)
        betas.append(task_betas)
        means_log.append(task_means)
        assert len(theta) == n
    loss = torch.stack(objectives).mean()
    return RefOutput(loss, torch.stack(query_losses), alphas, betas, means_log)
