"""Configuration: the schema of a run, its YAML files and ``key=value`` overrides, their docs.

Holds :mod:`~alfa.config.schema` (one frozen dataclass per section, each field's meaning in its
trailing comment), :mod:`~alfa.config.load` (reading, overriding and validating a config),
:mod:`~alfa.config.writer` (short YAML files of the keys that differ from the defaults) and
:mod:`~alfa.config.docs` (``alfa config keys`` and ``docs/config.md``).

May import: :mod:`alfa.errors` and the standard library, NumPy-free and torch-free, so that the
command line can read and check a config before torch is imported. Everything else in ``alfa``
may import this package.

The loading API is re-exported here: ``from alfa.config import Config, load_config``.
"""

from alfa.config.load import (
    DATASETS,
    Config,
    DataConfig,
    EvalConfig,
    MetaConfig,
    ModelConfig,
    RuleConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    leaf_keys,
    load_config,
    parse_overrides,
    read_yaml,
)

__all__ = [
    "DATASETS",
    "Config",
    "DataConfig",
    "EvalConfig",
    "MetaConfig",
    "ModelConfig",
    "RuleConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "leaf_keys",
    "load_config",
    "parse_overrides",
    "read_yaml",
]
