"""Fixtures of the hostile-input suite (the helpers live in ``hostile_conftest``)."""

from hostile_conftest import hostile

__all__ = ["hostile"]
