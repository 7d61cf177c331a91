"""ALFA: meta-learning with adaptive hyperparameters (Baik et al., NeurIPS 2020) on torch.func.

The main pieces:

- :class:`alfa.MetaLearner`: a base learner + an update rule + the outer objective (Eq. 2),
  vectorised over tasks: ``MetaLearner(model, rule="alfa", steps=5, **rule_options)``.
- :mod:`alfa.rules`: inner-loop update rules (``MAML``, ``LearnedFixed``, ``ALFA``, ``L2F``).
- :class:`alfa.FewShotEpisodes`: a user's images (a folder or a ``torch.utils.data.Dataset``)
  as a stream of training meta-batches and the fixed seeded test episodes of ``alfa eval``.
- :mod:`alfa.tasks`, :mod:`alfa.data`: sinusoid regression and few-shot image episodes.
- :func:`alfa.train.train`, :func:`alfa.evaluate.evaluate`: the outer loop and the protocol.
- :mod:`alfa.distributed`: both over the processes of a ``torchrun`` job (data parallel).

Importing the package is cheap: the names below are loaded on first use, so the command line
(``alfa --help``) answers without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alfa.data.few_shot import FewShotEpisodes
    from alfa.functional import FunctionalModel
    from alfa.meta_learner import MetaLearner, MetaOutput
    from alfa.rules import ALFA, L2F, MAML, LearnedFixed, UpdateRule, build_rule, make_rule
    from alfa.tasks import SinusoidTasks
    from alfa.typing import Params, TaskBatch

_LAZY = {
    "ALFA": "alfa.rules",
    "L2F": "alfa.rules",
    "MAML": "alfa.rules",
    "LearnedFixed": "alfa.rules",
    "UpdateRule": "alfa.rules",
    "build_rule": "alfa.rules",
    "make_rule": "alfa.rules",
    "FewShotEpisodes": "alfa.data.few_shot",
    "FunctionalModel": "alfa.functional",
    "MetaLearner": "alfa.meta_learner",
    "MetaOutput": "alfa.meta_learner",
    "SinusoidTasks": "alfa.tasks",
    "Params": "alfa.typing",
    "TaskBatch": "alfa.typing",
}

__all__ = [
    "ALFA",
    "L2F",
    "MAML",
    "FewShotEpisodes",
    "FunctionalModel",
    "LearnedFixed",
    "MetaLearner",
    "MetaOutput",
    "Params",
    "SinusoidTasks",
    "TaskBatch",
    "UpdateRule",
    "build_rule",
    "make_rule",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Load a public name (and its module, with torch) on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:  # a submodule (alfa.errors, alfa.evaluate, ...)
        try:
            return importlib.import_module(f"alfa.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"alfa.{name}":
                raise
            raise AttributeError(f"module 'alfa' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
