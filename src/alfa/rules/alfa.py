"""ALFA: adaptive learning of hyperparameters for fast adaptation (Baik et al., NeurIPS 2020).

At inner step ``j`` of task ``i``, the learning state ``tau_ij`` is reduced to the layer-wise means
of the weights and of the gradients (Sec. 3.3); g_phi maps it to per-layer multipliers (Eq. 5),
which the per-step per-layer post-multipliers scale (Eq. 7)::

    alpha_ij = alpha0[j] * g_alpha(tau_ij),    beta_ij = beta0[j] * g_beta(tau_ij)

and the update is ``theta <- (1 - beta_ij) * theta - alpha_ij * grad`` (Eq. 4 in the official
code's weight-decay form, reference A.2). The weight means are not detached (the meta-gradient
flows through them); the gradient means are (the official code takes them from a separate
gradient call without a graph).

With ``per_element_decay`` (the official random-init variant) a meta-learned tensor ``w`` of the
shape of each parameter, initialised to ``lr * weight_decay``, multiplies beta, and beta0 starts
at 1: ``theta <- (1 - w * g_beta * beta0[j]) * theta - g_alpha * alpha0[j] * grad``.

``per_step`` and ``per_layer`` (Table 6) set where the hyperparameters may differ, for the
post-multipliers and the generated values alike. Without ``per_layer`` g_phi outputs one value
per generated hyperparameter, shared by every layer; without ``per_step`` it reads the learning
state of step 0 only and its output holds for every step of that inner loop. Both on (the
default) is the method of the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from alfa.rules.base import (
    Hyperparameters,
    UpdateRule,
    layer_means,
    layer_rms,
    per_element_decays,
)
from alfa.rules.generator import HyperparameterGenerator
from alfa.rules.post_multipliers import StepLayerTable
from alfa.typing import Params

__all__ = ["ALFA"]


class ALFA(UpdateRule):
    """The ALFA update rule.

    Args:
        names: the adapted tensors' names (see :class:`~alfa.rules.base.UpdateRule`).
        shapes: their shapes.
        steps: inner steps S.
        lr: initial alpha0 (0.01).
        weight_decay: lambda; beta0 starts at ``lr * weight_decay`` (5e-6).
        generator_input: ``"both"`` (default), ``"weights"`` or ``"gradients"`` (Table 5).
        state_statistics: ``("mean",)`` (paper) or ``("mean", "rms")``: the layer-wise
            statistics of each input; ``rms`` adds each layer's root mean square.
        generate: which of ``alpha``/``beta`` g_phi generates; a hyperparameter that is not
            generated is its post-multiplier alone (Table 6, "fixed").
        generator_layers: 2 (official code) or 3 (paper text).
        generator_init: ``"unit"`` (stable start, default) or ``"official"``.
        clip: optional bounds on the generated multipliers.
        state_encoding: ``"raw"`` (paper) or ``"log_sign"``: how g_phi reads the learning state
            (:mod:`alfa.rules.state_encoding`).
        generator_output: ``"linear"`` (paper) or ``"bounded"``: multipliers in (0, 2)
            (:class:`~alfa.rules.generator.HyperparameterGenerator`).
        per_step: whether alpha and beta differ across steps (the post-multipliers' layout
            and the generator's, see above).
        per_layer: whether they differ across layers.
        learn_alpha: whether alpha0 is meta-learned.
        learn_beta: whether beta0 is meta-learned.
        per_element_decay: the random-init variant's meta-learned per-element weight-decay
            tensor (``rule.per_element_decay``).
        detach_gradient_state: cut the meta-gradient through the gradient means fed to g_phi
            (the official code's behaviour); False differentiates through them too.
    """

    name = "alfa"

    def __init__(
        self,
        names: Sequence[str],
        shapes: Sequence[torch.Size],
        steps: int,
        *,
        lr: float = 0.01,
        weight_decay: float = 0.0005,
        generator_input: Literal["both", "weights", "gradients"] = "both",
        state_statistics: Sequence[str] = ("mean",),
        generate: Sequence[str] = ("alpha", "beta"),
        generator_layers: Literal[2, 3] = 2,
        generator_init: Literal["unit", "official"] = "unit",
        clip: tuple[float, float] | None = None,
        state_encoding: Literal["raw", "log_sign"] = "raw",
        generator_output: Literal["linear", "bounded"] = "linear",
        per_step: bool = True,
        per_layer: bool = True,
        learn_alpha: bool = True,
        learn_beta: bool = True,
        per_element_decay: bool = False,
        detach_gradient_state: bool = True,
    ) -> None:
        super().__init__(names, shapes, steps)
        n = len(names)
        if generator_input not in ("both", "weights", "gradients"):
            raise ValueError(
                f"generator_input must be both, weights or gradients: {generator_input!r}"
            )
        self.generator_input = generator_input
        if tuple(state_statistics) not in (("mean",), ("mean", "rms")):
            raise ValueError(
                f"state_statistics must be ['mean'] or ['mean', 'rms']: {list(state_statistics)}"
            )
        self.state_statistics = tuple(state_statistics)
        self.generate = tuple(g for g in ("alpha", "beta") if g in generate)
        layout = {"per_step": per_step, "per_layer": per_layer}
        beta_init = 1.0 if per_element_decay else lr * weight_decay
        self.alpha0 = StepLayerTable(steps, n, lr, learn=learn_alpha, **layout)
        self.beta0 = StepLayerTable(steps, n, beta_init, learn=learn_beta, **layout)
        self.generator: HyperparameterGenerator | None = None
        if self.generate:
            in_features = (2 if generator_input == "both" else 1) * n * len(self.state_statistics)
            self.generator = HyperparameterGenerator(
                in_features,
                (n if per_layer else 1) * len(self.generate),
                2 * n,
                layers=generator_layers,
                init=generator_init,
                clip=clip,
                encoding=state_encoding,
                output=generator_output,
            )
        self.per_step = per_step
        self.per_layer = per_layer
        self.held = _StepZeroOutput()
        self.per_element_decay = per_element_decay
        self.detach_gradient_state = detach_gradient_state
        self.decays = per_element_decays(
            self.shapes if per_element_decay else (), lr * weight_decay
        )

    def learning_state(self, params: Params, grads: Params) -> Tensor:
        """``tau_bar``: ``[T, 2N]`` = [weight means (with graph), gradient means (detached)];
        with ``rms`` in ``state_statistics``, ``[T, 4N]`` = [weight means, weight RMS, gradient
        means, gradient RMS]."""
        parts = []
        if self.generator_input in ("both", "weights"):
            parts += self._statistics(params)
        if self.generator_input in ("both", "gradients"):
            stats = self._statistics(grads)
            parts += [s.detach() for s in stats] if self.detach_gradient_state else stats
        return torch.cat(parts, dim=1)

    def _statistics(self, tensors: Params) -> list[Tensor]:
        out = [layer_means(tensors, self.names)]
        if "rms" in self.state_statistics:
            out.append(layer_rms(tensors, self.names))
        return out

    def hyperparameters(self, step: int, params: Params, grads: Params) -> Hyperparameters:
        tasks = params[self.names[0]].shape[0]
        n = self.num_layers
        alpha = self.alpha0(step).unsqueeze(0).expand(tasks, -1)
        beta = self.beta0(step).unsqueeze(0).expand(tasks, -1)
        if self.generator is not None:
            if self.per_step or step == 0:
                generated = self.generator(self.learning_state(params, grads))
                self.held.value = None if self.per_step else generated
            else:
                generated = self.held.read(tasks)
            width = n if self.per_layer else 1
            for k, which in enumerate(self.generate):
                part = generated[:, k * width : (k + 1) * width].expand(tasks, n)
                if which == "alpha":
                    alpha = alpha * part
                else:
                    beta = beta * part
        return Hyperparameters(alpha, beta)

    def decay(self, name: str) -> Tensor | None:
        if not self.per_element_decay:
            return None
        return self.decays[str(self.names.index(name))]


class _StepZeroOutput:
    """The generator's output at step 0 of the current inner loop, read by the later steps when
    the generated values do not change per step (``per_step`` off). Not part of the state:
    a copy of the rule starts empty."""

    def __init__(self) -> None:
        self.value: Tensor | None = None

    def read(self, tasks: int) -> Tensor:
        if self.value is None or self.value.shape[0] != tasks:
            raise RuntimeError(
                "ALFA without per_step generates at step 0 and holds the values; run the inner "
                "loop from step 0"
            )
        return self.value

    def __deepcopy__(self, memo: dict) -> _StepZeroOutput:
        return _StepZeroOutput()
