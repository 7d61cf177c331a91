"""The closed-form fast path of the inner loop for standard layers (see
:mod:`alfa.engine.fast.model`)."""

from alfa.engine.fast.model import FastModel, fast_model
from alfa.engine.fast.program import Program, compile_program, unsupported

__all__ = ["FastModel", "Program", "compile_program", "fast_model", "unsupported"]
