"""The linear head of each task before the inner loop: Proto-MAML, zero, or the meta-learned one.

**Proto-MAML** (Triantafillou et al., ICLR 2020, Sec. 4): the Prototypical Network classifier
``-||f(x) - c_k||^2`` with prototypes ``c_k`` (the mean support embedding of class ``k``) equals,
up to ``-||f(x)||^2`` which is the same for every class, the linear layer

    W_k = 2 c_k,    b_k = -||c_k||^2

so the head of each task is set to it from the support embeddings at the initial weights, and
the inner loop (any rule: ``maml``, ``learned_fixed``, ``alfa``) fine-tunes it with the rest of
the network. The prototypes keep their graph: the outer gradient reaches the feature extractor
through the head's initial value too (also when the inner loop is first order, fo-Proto-MAML).

**Variable ways** (fo-MAML on Meta-Dataset): Meta-Dataset's MAML learner keeps one meta-learned
head of ``logit_dim`` outputs (the largest number of ways) and uses the first ``N`` logits of an
``N``-way episode (its ``zero_fc_layer`` option sets the head to zero before each episode
instead; its Proto-MAML head is the prototype head zero-padded to ``logit_dim`` outputs). Here
the head of an ``N``-way episode is the first ``N`` rows of the meta-learned head (``learned``),
zeros (``zero``) or the prototype head (``proto``), with exactly ``N`` rows. For gradient-descent
rules this is the same computation: the unused outputs get no gradient, never change and never
reach a prediction. For ALFA the per-layer means that the generator reads are taken over the
``N`` rows that exist rather than over a zero-padded ``logit_dim``.

Needs a base learner with a feature extractor ``embed(x)`` and a linear head ``classifier``
(:class:`~alfa.models.backbone.FewShotBackbone`: 4-CONV, ResNet12).
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from alfa.engine.functional import FunctionalModel
from alfa.typing import Params

__all__ = ["HEAD_INITS", "HeadInit", "class_prototypes", "prototype_head"]

HEAD_INITS = ("learned", "zero", "proto")
HeadMode = Literal["learned", "zero", "proto"]


def class_prototypes(embeddings: Tensor, labels: Tensor, ways: int) -> Tensor:
    """Mean embedding of each class: ``[T, S, D]``, labels ``[T, S]`` -> ``[T, ways, D]``."""
    onehot = F.one_hot(labels, ways).to(embeddings.dtype)  # [T, S, ways]
    sums = onehot.transpose(1, 2) @ embeddings
    counts = onehot.sum(1).clamp_min(1.0).unsqueeze(-1)
    return sums / counts


def prototype_head(prototypes: Tensor) -> tuple[Tensor, Tensor]:
    """The linear layer of the prototype classifier: ``W = 2 c``, ``b = -||c||^2``."""
    return 2.0 * prototypes, -(prototypes * prototypes).sum(-1)


class _Embedder(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.embed(x)


class HeadInit:
    """Sets each task's head before the inner loop (see the module docstring).

    Args:
        model: the base learner (with ``embed`` and a linear ``classifier``).
        mode: ``learned`` (first N rows of the meta-learned head), ``zero`` or ``proto``.
        ways: the number of ways of every episode when it is fixed (N-way episodes of one
            dataset); None (variable ways, Meta-Dataset) reads it from each episode's support
            labels, which on a GPU waits for the device once per episode (the head's shape
            depends on it).
    """

    def __init__(self, model: nn.Module, mode: HeadMode = "proto", ways: int | None = None) -> None:
        if mode not in HEAD_INITS:
            raise ValueError(f"head init must be one of {', '.join(HEAD_INITS)}, got {mode!r}")
        head = getattr(model, "classifier", None)
        if not callable(getattr(model, "embed", None)) or not isinstance(head, nn.Linear):
            raise ValueError(
                f"{type(model).__name__} has no feature extractor `embed` and linear "
                "`classifier` head; Proto-MAML and variable ways need both"
            )
        if ways is not None and not 1 <= ways <= head.out_features:
            raise ValueError(f"ways must be in 1..{head.out_features}, got {ways!r}")
        self.mode = mode
        self.ways = ways
        self.model = model
        self.weight, self.bias = "classifier.weight", "classifier.bias"
        self.has_bias = head.bias is not None
        self.max_ways = head.out_features
        self._embedder = FunctionalModel(_Embedder(model)) if mode == "proto" else None

    def embed(self, x: Tensor) -> Tensor:
        """Support embeddings ``[T, S, D]`` at the initial weights.

        Computed from the module's own parameters (broadcast over the tasks), not from the
        per-task copies that the inner loop differentiates: the inner-loop gradient of the
        feature extractor must not run back through the head's initial value, while the outer
        gradient still reaches the weights through the prototypes.
        """
        assert self._embedder is not None
        tasks = x.shape[0]
        params = {
            "net." + n: p.unsqueeze(0).expand(tasks, *p.shape)
            for n, p in self.model.named_parameters()
            if "net." + n in self._embedder.names
        }
        return self._embedder.apply(params, x)

    def __call__(self, params: Params, support_x: Tensor, support_y: Tensor) -> Params:
        """The initial parameters ``params`` (``[T, ...]``) with each task's head set."""
        ways = self.ways if self.ways is not None else int(support_y.max()) + 1
        out = dict(params)
        weight = params[self.weight]
        if self.mode == "learned":
            if ways > self.max_ways:
                raise ValueError(
                    f"an episode has {ways} ways, the head has {self.max_ways} outputs"
                )
            # clone: a view taken without grad mode would claim requires_grad with no graph
            out[self.weight] = weight[:, :ways].clone()
            if self.has_bias:
                out[self.bias] = params[self.bias][:, :ways].clone()
        elif self.mode == "zero":
            tasks, _, dim = weight.shape
            out[self.weight] = weight.new_zeros(tasks, ways, dim)
            if self.has_bias:
                out[self.bias] = weight.new_zeros(tasks, ways)
        else:
            protos = class_prototypes(self.embed(support_x), support_y, ways)
            w, b = prototype_head(protos)
            out[self.weight] = w
            if self.has_bias:
                out[self.bias] = b
        return out
