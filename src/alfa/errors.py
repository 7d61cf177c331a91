"""User-facing errors: caught by the CLI, printed on one line, exit code 2."""

from __future__ import annotations

__all__ = ["AlfaError", "ConfigError", "DataError", "DivergenceError"]


class AlfaError(Exception):
    """An error caused by the user's input; the CLI prints it on one line and exits with 2."""

    exit_code = 2


class ConfigError(AlfaError):
    """A configuration key, type or value is wrong."""


class DataError(AlfaError):
    """A dataset path, format or content is wrong."""


class DivergenceError(AlfaError):
    """A NaN or inf appeared in the inner or outer loop."""

    exit_code = 3
