"""User-facing errors: caught by the CLI, printed on one line, exit code 2."""

from __future__ import annotations

__all__ = [
    "AlfaError",
    "ArgumentError",
    "BatchError",
    "ConfigError",
    "DataError",
    "DivergenceError",
    "ModelError",
]


class AlfaError(Exception):
    """An error caused by the user's input; the CLI prints it on one line and exits with 2."""

    exit_code = 2


class ConfigError(AlfaError):
    """A configuration key, type or value is wrong."""


class DataError(AlfaError):
    """A dataset path, format or content is wrong."""


class ArgumentError(AlfaError, ValueError):
    """An argument of the Python API is wrong (a task kind, a rule name, a step count)."""


class BatchError(ArgumentError):
    """A :class:`~alfa.typing.TaskBatch` has the wrong shapes, dtypes or labels."""


class ModelError(ArgumentError):
    """A base learner holds a module that cannot run once per task (the message names it)."""


class DivergenceError(AlfaError):
    """A NaN or inf appeared in the inner or outer loop.

    Raised by the inner loop's checks with where it happened: ``what`` (e.g. ``"gradient"``),
    the inner ``step``, the ``layer`` (None for a loss) and the ``task``.
    """

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        what: str | None = None,
        step: int | None = None,
        layer: str | None = None,
        task: int | None = None,
    ) -> None:
        super().__init__(message)
        self.what, self.step, self.layer, self.task = what, step, layer, task
