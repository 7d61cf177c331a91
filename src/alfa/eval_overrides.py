"""``alfa eval RUN key=value ...``: evaluate a trained run on other test data or another
protocol without editing its ``config.yaml``.

Only keys that leave the trained meta-learner as it is may change: where the test classes come
from (``data.test_*``, e.g. a class-list file or another dataset's folder), the shots of a test
task, the evaluation protocol (``eval.*``) and where it runs. The number of ways is fixed by the
trained classifier's output layer, and every other key describes training.
"""

from __future__ import annotations

from alfa.config import Config, config_from_dict, config_to_dict, parse_overrides
from alfa.errors import ConfigError
from alfa.runs import key_matches, leaf_keys

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
    if not overrides:
        return config
    given = leaf_keys(parse_overrides(overrides))
    data = config_to_dict(config)
    for key, value in given.items():
        *sections, leaf = key.split(".")
        node = data
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key '{key}': '{section}' is not a section")
        node[leaf] = value
    changed = config_from_dict(data)  # unknown keys and bad values first, with their messages
    fixed = sorted(key for key in given if not key_matches(key, EVAL_KEYS))
    if fixed:
        raise ConfigError(
            f"config key '{fixed[0]}' cannot change for 'alfa eval': it describes the trained "
            "meta-learner; eval accepts data.test_name, data.test_root, data.test_format, "
            "data.test_split_file, data.test_query, data.shots, eval.*, train.device and "
            "train.threads"
        )
    return changed
