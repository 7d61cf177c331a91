"""``alfa eval RUN key=value ...``: evaluate a trained run on other test data or another
protocol without editing its ``config.yaml``.

Only keys that leave the trained meta-learner as it is may change: where the test classes come
from (``data.test_*``, e.g. a class-list file or another dataset's folder), the shots of a test
task, the evaluation protocol (``eval.*``) and where it runs. The number of ways is fixed by the
trained classifier's output layer, and every other key describes training.
"""

from __future__ import annotations

from alfa.config import Config
from alfa.runs.reopen import override_config

__all__ = ["EVAL_KEYS", "eval_config"]

EVAL_KEYS = (
    "data.test_name",
    "data.test_root",
    "data.test_format",
    "data.test_split_file",
    "data.test_query",
    "data.shots",
    "eval.*",
    "train.device",
    "train.threads",
)
"""Config keys that ``alfa eval`` may override (``eval.*``: the whole section)."""


def eval_config(config: Config, overrides: list[str]) -> Config:
    """A trained run's (or export's) config with ``key=value`` overrides of :data:`EVAL_KEYS`,
    validated as ``alfa train`` validates a config.

    Raises:
        ConfigError: an override is malformed, unknown, invalid, or of a key that describes
            training (naming it).
    """
    return override_config(
        config,
        overrides,
        EVAL_KEYS,
        "for 'alfa eval': it describes the trained meta-learner; eval accepts "
        + ", ".join(EVAL_KEYS),
    )
