"""One training run, on disk and in time, and what is done with a trained one.

Training (:mod:`~alfa.runs.train`: the outer loop; :mod:`~alfa.runs.train_state`,
:mod:`~alfa.runs.checkpoint`, :mod:`~alfa.runs.durable`, :mod:`~alfa.runs.last_good`: what is
saved and where to resume; :mod:`~alfa.runs.rundir`, :mod:`~alfa.runs.runlog`: the run
directory and its logs; :mod:`~alfa.runs.validation`, :mod:`~alfa.runs.divergence`;
:mod:`~alfa.runs.memory`, :mod:`~alfa.runs.dry_run`: refusing what cannot fit;
:mod:`~alfa.runs.distributed`: ``torchrun``), building a meta-learner from a config
(:mod:`~alfa.runs.build`, :mod:`~alfa.runs.preprocessing`), the evaluation protocol
(:mod:`~alfa.runs.evaluate`), and a finished run: reopened (:mod:`~alfa.runs.reopen`),
plotted (:mod:`~alfa.runs.plots`), exported (:mod:`~alfa.runs.export`), shipped
(:mod:`~alfa.runs.pretrained`) or loaded to adapt (:mod:`~alfa.runs.trained`).

May import: :mod:`alfa.engine`, :mod:`alfa.rules`, :mod:`alfa.models`, :mod:`alfa.tasks`,
:mod:`alfa.data`, :mod:`alfa.config` and the bottom modules (:mod:`alfa.typing`,
:mod:`alfa.batch_checks`, :mod:`alfa.errors`, :mod:`alfa.version`). Never paper or cli.
"""
