"""ALFA: meta-learning with adaptive hyperparameters (Baik et al., NeurIPS 2020) on torch.func.

The main pieces:

- :mod:`alfa.rules`: inner-loop update rules (``MAML``, ``LearnedFixed``, ``ALFA``, ``L2F``).
- :class:`alfa.MetaLearner`: a base learner + a rule + the outer objective, vectorised over tasks.
- :mod:`alfa.tasks`, :mod:`alfa.data`: sinusoid regression and few-shot image episodes.
- :func:`alfa.train.train`, :func:`alfa.evaluate.evaluate`: the outer loop and the protocol.
- :mod:`alfa.distributed`: both over the processes of a ``torchrun`` job (data parallel).
"""

from alfa.functional import FunctionalModel
from alfa.meta_learner import MetaLearner, MetaOutput
from alfa.rules import ALFA, L2F, MAML, LearnedFixed, UpdateRule, build_rule
from alfa.tasks import SinusoidTasks
from alfa.typing import Params, TaskBatch

__all__ = [
    "ALFA",
    "L2F",
    "MAML",
    "FunctionalModel",
    "LearnedFixed",
    "MetaLearner",
    "MetaOutput",
    "Params",
    "SinusoidTasks",
    "TaskBatch",
    "UpdateRule",
    "build_rule",
]

__version__ = "0.1.0"
