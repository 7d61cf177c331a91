"""The meta-learning engine: one meta-iteration of a base learner and an update rule.

Holds the :class:`~alfa.engine.meta_learner.MetaLearner` (the outer objective, Eq. 2, over a
meta-batch vectorised with ``vmap``), the inner loop (Eqs. 1 and 3), the functional view of any
``nn.Module`` (:mod:`~alfa.engine.functional`, :mod:`~alfa.engine.base_learner`), the
prototype head, the losses, the multi-step loss weights, how a meta-iteration executes
(compiled, precision, layout: :mod:`~alfa.engine.execution`) and the closed-form fast path for
standard layers (:mod:`alfa.engine.fast`).

May import: :mod:`alfa.rules`, :mod:`alfa.models`, :mod:`alfa.config`, :mod:`alfa.typing`,
:mod:`alfa.batch_checks`, :mod:`alfa.errors`. Never tasks, data, runs, paper or cli: the engine
knows tensors, not where they come from nor what is done with the result.
"""
