"""ALFA: meta-learning with adaptive hyperparameters (Baik et al., NeurIPS 2020) on torch.func.

The public API is the names of ``__all__``, imported from here (``alfa.MetaLearner``):

- :class:`alfa.MetaLearner`: a base learner + an update rule + the outer objective (Eq. 2),
  vectorised over tasks: ``MetaLearner(model, rule="alfa", steps=5, **rule_options)``.
- ``alfa.ALFA``, ``alfa.MAML``, ``alfa.LearnedFixed``, ``alfa.L2F``: the inner-loop update rules
  (:mod:`alfa.rules`).
- :class:`alfa.FewShotEpisodes`: a user's images (a folder or a ``torch.utils.data.Dataset``)
  as a stream of training meta-batches and the fixed seeded test episodes of ``alfa eval``;
  :class:`alfa.SinusoidTasks`: the regression tasks of Table 8.
- :func:`alfa.train`, :func:`alfa.evaluate`: the outer loop (with checkpoints, resumable, over
  the processes of a ``torchrun`` job) and the evaluation protocol; :func:`alfa.load_config`.
- :func:`alfa.save`, :func:`alfa.load`, :func:`alfa.export`, :func:`alfa.pretrained`: a learner
  to and from a file (:mod:`alfa.runs.saving`): any learner's tensors, a learner with the
  config and preprocessing that ``alfa eval`` and ``alfa adapt`` take, a shipped model.

The package is cut into layers, each a subpackage that imports only from the layers below it
(checked by ``lint-imports``, see ``docs/architecture.md``): :mod:`alfa.cli` >
:mod:`alfa.paper` > :mod:`alfa.runs` > :mod:`alfa.engine` and :mod:`alfa.tasks` >
:mod:`alfa.rules`, :mod:`alfa.models` and :mod:`alfa.data` > :mod:`alfa.config` > the modules
beside this one (:mod:`alfa.typing`, :mod:`alfa.batch_checks`, :mod:`alfa.errors`,
:mod:`alfa.version`).

Importing the package is cheap: the names below are loaded on first use, so the command line
(``alfa --help``) answers without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alfa.config import Config, load_config
    from alfa.data.few_shot import FewShotEpisodes
    from alfa.engine.functional import FunctionalModel
    from alfa.engine.meta_learner import MetaLearner, MetaOutput
    from alfa.rules import ALFA, L2F, MAML, LearnedFixed, UpdateRule, build_rule, make_rule
    from alfa.runs.evaluate import evaluate
    from alfa.runs.saving import export, load, pretrained, save
    from alfa.runs.train import train
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
    "Config": "alfa.config",
    "load_config": "alfa.config",
    "FewShotEpisodes": "alfa.data.few_shot",
    "FunctionalModel": "alfa.engine.functional",
    "MetaLearner": "alfa.engine.meta_learner",
    "MetaOutput": "alfa.engine.meta_learner",
    "SinusoidTasks": "alfa.tasks",
    "Params": "alfa.typing",
    "TaskBatch": "alfa.typing",
    "evaluate": "alfa.runs.evaluate",
    "export": "alfa.runs.saving",
    "load": "alfa.runs.saving",
    "pretrained": "alfa.runs.saving",
    "save": "alfa.runs.saving",
    "train": "alfa.runs.train",
}

SUBPACKAGES = ("cli", "config", "data", "engine", "models", "paper", "rules", "runs", "tasks")
"""The layers (see the module docstring); ``alfa.errors``, ``alfa.typing``,
``alfa.batch_checks`` and ``alfa.version`` are the modules beside them."""

__all__ = [
    "ALFA",
    "L2F",
    "MAML",
    "Config",
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
    "evaluate",
    "export",
    "load",
    "load_config",
    "make_rule",
    "pretrained",
    "save",
    "train",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Load a public name (and its module, with torch) on first use (PEP 562); a subpackage or a
    module beside this one (``alfa.runs``, ``alfa.errors``) is imported as usual."""
    module = _LAZY.get(name)
    if module is None:
        if name in SUBPACKAGES or name in ("batch_checks", "errors", "typing", "version"):
            return importlib.import_module(f"alfa.{name}")
        raise AttributeError(f"module 'alfa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
