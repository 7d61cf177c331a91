"""What 4-CONV and ResNet12 share: initialisation, the BatchNorm modes and the classifier head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from alfa.models.batchnorm import MetaBatchNorm2d

__all__ = ["FewShotBackbone"]


class FewShotBackbone(nn.Module):
    """A feature extractor (``_features``) followed by a linear classifier (``classifier``).

    Subclasses set ``norm_mode`` (``"transductive"`` or ``"support"``), build their layers and
    the ``classifier``, implement ``_features(x, split)``, and call :meth:`reset_parameters`.
    """

    norm_mode: str
    classifier: nn.Linear

    def reset_parameters(self) -> None:
        """Xavier-uniform conv and linear weights, zero biases, batch norm scale 1 and shift 0.

        Draws from PyTorch's global generator, so seeding with ``torch.manual_seed`` first makes
        it reproducible.
        """
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, MetaBatchNorm2d):
                module.reset_parameters()

    def _features(self, x: Tensor, split: int | None) -> Tensor:
        raise NotImplementedError

    def embed(self, x: Tensor, reference: Tensor | None = None) -> Tensor:
        """Features before the classifier, ``[B, feature_dim]``; arguments as in :meth:`forward`."""
        if reference is None or self.norm_mode == "transductive":
            return self._features(x, None)
        n = reference.shape[0]
        return self._features(torch.cat([reference, x]), n)[n:]

    def forward(self, x: Tensor, reference: Tensor | None = None) -> Tensor:
        """Class logits for a batch of images.

        Args:
            x: Images ``[B, C, H, W]`` (one task; vmap over a leading task axis for a meta-batch).
            reference: The task's support images ``[S, C, H, W]``. Used only when
                ``norm_mode == "support"``: every batch-norm layer then takes its statistics from
                the reference activations, so the output for one image of ``x`` does not depend on
                the other rows of ``x``. Ignored in transductive mode. With ``reference=None`` the
                batch ``x`` is normalised with its own statistics (right for the support set
                itself in either mode).

        Returns:
            Logits ``[B, ways]``.
        """
        return self.classifier(self.embed(x, reference))
