"""The paper-to-config map: which config reproduces which table, figure and switch of the paper.

``docs/paper-map.md`` is written from the code that builds the configs, so it cannot drift from
them: the classification cells of Tables 1, 2 and 4-7 from :data:`alfa.paper.recipes.PAPER_CELLS`
(``configs/paper/``), the Table 8 cells from :mod:`alfa.paper.table8_cells` (``configs/sinusoid/``),
and the Table 3 runs from the overrides of
``scripts/metadataset_omniglot_minimal.py``. Each table lists the config keys that tell its
cells apart; every switch of :data:`SWITCHES` is applied to the default config, so a key that
is renamed or a value that is no longer allowed fails the generator. What was run here is read
from ``results/``::

    python -m alfa.paper.paper_map              # rewrite docs/paper-map.md
    python -m alfa.paper.paper_map --check      # exit 1 when docs/paper-map.md is out of date
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from alfa.config import (
    Config,
    config_from_dict,
    config_to_dict,
    leaf_keys,
    load_config,
    parse_overrides,
)
from alfa.config.docs import write_or_check
from alfa.errors import ConfigError
from alfa.paper.recipes import PAPER_CELLS, paper_config
from alfa.paper.table8_cells import CELLS as TABLE8_CELLS
from alfa.paper.table8_cells import LABELS, PAPER_TABLE8, controlled_config

__all__ = [
    "DOCS_PATH",
    "SWITCHES",
    "TABLES",
    "check_switches",
    "render_markdown",
    "varying_keys",
]

DOCS_PATH = Path("docs") / "paper-map.md"
METADATASET_SCRIPT = Path("scripts") / "metadataset_omniglot_minimal.py"
METADATASET_CONFIG = Path("configs") / "metadataset" / "omniglot_minimal_protomaml.yaml"

TABLES: dict[str, str] = {
    "table1": "Table 1: 5-way miniImageNet and tieredImageNet, 4-CONV and ResNet12",
    "table2": "Table 2: cross-domain, miniImageNet to CUB, 5-way 5-shot",
    "table3": "Table 3: Meta-Dataset, fo-MAML and fo-Proto-MAML with and without ALFA",
    "table4": "Table 4: 20-way miniImageNet, 4-CONV",
    "table5": "Table 5: the generator's input (learning state)",
    "table6": "Table 6: alpha or beta, fixed or adaptive, per step or per layer",
    "table7": "Table 7: number of inner steps",
    "table8": "Table 8: sinusoid regression",
    "figure3": "Figure 3: generated alpha and beta per inner step",
}
"""Every table and figure of the paper this page maps, with its heading."""

SWITCHES: list[tuple[str, str, str, str]] = [
    ("MAML's inner loop, Eq. (1)", "all tables", "rule.name=maml", "rules.maml"),
    ("ALFA's update, Eqs. (4)-(7)", "all tables", "rule.name=alfa", "rules.alfa"),
    ("L2F attenuation (+L2F rows)", "Tables 1, 2", "rule.l2f=true", "rules.l2f"),
    (
        "random initialisation, never meta-learned",
        "Tables 1, 2, 6",
        "meta.init=random",
        "engine.meta_learner",
    ),
    (
        "random-init per-element weight decay",
        "Tables 1, 2",
        "rule.per_element_decay=true",
        "rules.alfa",
    ),
    ("learning state: weights only", "Table 5", "rule.generator_input=weights", "rules.alfa"),
    ("learning state: gradients only", "Table 5", "rule.generator_input=gradients", "rules.alfa"),
    ("generate alpha only", "Table 6", "rule.generate=[alpha]", "rules.alfa"),
    (
        "fixed (task-independent) alpha and beta",
        "Table 6",
        "rule.name=learned_fixed",
        "rules.learned_fixed",
    ),
    (
        "per step only (shared by the layers)",
        "Table 6",
        "rule.per_step=true rule.per_layer=false",
        "rules.post_multipliers",
    ),
    (
        "per layer only (held for every step)",
        "Table 6",
        "rule.per_step=false rule.per_layer=true",
        "rules.post_multipliers",
    ),
    ("inner steps S", "Table 7", "meta.steps=3", "engine.inner_loop"),
    ("three-layer generator", "Sec. 3.3", "rule.generator_layers=3", "rules.generator"),
    (
        "official generator initialisation",
        "Table 8 ablation",
        "rule.generator_init=official",
        "rules.generator",
    ),
    ("first-order meta-gradient", "Table 3", "meta.first_order=true", "engine.inner_loop"),
    (
        "Proto-MAML head from the support prototypes",
        "Table 3",
        "meta.head_init=proto",
        "engine.proto_head",
    ),
    (
        "first-order evaluation inner loop",
        "official code",
        "eval.first_order=true",
        "runs.evaluate",
    ),
    (
        "query normalised with the support statistics",
        "(paper: transductive)",
        "model.norm=support",
        "models.batchnorm",
    ),
    ("top-5 checkpoint ensemble", "official code", "train.keep_best=5", "runs.reopen"),
]
"""(paper switch, where the paper uses it, the overrides that set it, the module under ``alfa.``
that implements it)."""


def varying_keys(configs: list[Config]) -> list[str]:
    """The dotted keys (``name`` aside) whose value is not the same in every config."""
    flats = [leaf_keys(config_to_dict(c)) for c in configs]
    return [k for k in flats[0] if k != "name" and len({repr(f[k]) for f in flats}) > 1]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return "''" if value == "" else str(value)


def _settings(configs: list[Config], skip: list[str]) -> str:
    """The keys the configs share and set away from the defaults, as ``key=value``."""
    default = leaf_keys(config_to_dict(Config()))
    flats = [leaf_keys(config_to_dict(c)) for c in configs]
    shared = [
        f"`{k}={_value(v)}`"
        for k, v in flats[0].items()
        if k not in skip and k != "name" and v != default[k]
    ]
    return ", ".join(shared)


def _link(folder: str, stem: str) -> str:
    """A config file, linked from ``docs/`` (the docs check finds a missing one)."""
    return f"[`{stem}`](../{folder}/{stem}.yaml)"


def _cell_table(rows: list[tuple[str, Config]], keys: list[str]) -> list[str]:
    out = ["| config | " + " | ".join(f"`{k}`" for k in keys) + " |"]
    out.append("|---" * (len(keys) + 1) + "|")
    for label, config in rows:
        values = leaf_keys(config_to_dict(config))
        out.append(f"| {label} | " + " | ".join(_value(values[k]) for k in keys) + " |")
    return out


def _classification(table: str) -> list[str]:
    cells = [c for c in PAPER_CELLS if c[0] == table]
    rows = [(_link("configs/paper", paper_config(*c).name), paper_config(*c)) for c in cells]
    configs = [config for _, config in rows]
    keys = varying_keys(configs)
    out = [
        f"{len(cells)} configs, built by `alfa.paper.recipes.paper_config` "
        "(`python -m alfa.paper.recipes configs` writes them). Every config also sets (away from "
        "the defaults): " + _settings(configs, keys) + ".",
        "",
        "Run one with `alfa train configs/paper/NAME.yaml data.root=/your/copy` "
        "and test it with `alfa eval runs/NAME` (add `train.keep_best=5` and "
        "`alfa eval runs/NAME --ensemble 5` for the official code's ensemble).",
        "",
    ]
    return out + _cell_table(rows, keys)


def metadataset_runs(root: Path) -> list[tuple[str, list[str]]]:
    """(run folder, overrides) of each run of the Table 3 script: its ``RUNS`` literal,
    ``{folder: (label, [overrides])}``, read without running the script."""
    tree = ast.parse((root / METADATASET_SCRIPT).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "RUNS" for t in node.targets
        ):
            runs = ast.literal_eval(node.value)
            return [(name, list(overrides)) for name, (_, overrides) in runs.items()]
    raise LookupError(f"{METADATASET_SCRIPT} defines no RUNS")


def _table3(root: Path) -> list[str]:
    runs = metadataset_runs(root)
    rows = [
        (
            f"`{name}`: {' '.join(f'`{o}`' for o in overrides) or '(the config)'}",
            load_config(root / METADATASET_CONFIG, overrides),
        )
        for name, overrides in runs
    ]
    keys = varying_keys([c for _, c in rows])
    recipes = sorted((root / "configs" / "paper").glob("table3_*.yaml"))
    return [
        "The paper's four columns (ILSVRC-2012 training, every source tested) are the recipes "
        + ", ".join(_link("configs/paper", p.stem) for p in recipes)
        + " (Meta-Dataset's ResNet-18 and hyperparameters, docs/metadataset.md); not run here.",
        "",
        "No Meta-Dataset source is available here. The same pipeline (Meta-Dataset's record "
        "format, variable-way variable-shot episodes, fo-MAML and fo-Proto-MAML heads) runs on "
        f"the minimal Omniglot sets: `{METADATASET_CONFIG.as_posix()}` with the overrides of "
        f"`{METADATASET_SCRIPT.as_posix()}`. Every config also sets (away from the defaults): "
        + _settings([c for _, c in rows], [*keys, "data.root"])
        + ".",
        "",
        *_cell_table(rows, keys),
    ]


def _table8(root: Path) -> list[str]:
    cells = list(dict.fromkeys((net, shots, m) for net, shots, m, _ in TABLE8_CELLS))
    rows = []
    for net, shots, m in cells:
        name = f"{m}_k{shots}_{net}"
        shipped = root / "configs" / "sinusoid" / f"{name}.yaml"
        label = _link("configs/sinusoid", name) if shipped.is_file() else f"{net} {shots}-shot"
        rows.append((f"{label} {LABELS[m]}", controlled_config(net, shots, m, 0)))
    keys = varying_keys([c for _, c in rows])
    return [
        "Every row under one protocol and one outer optimiser (the meta-gradient clipped at "
        "norm 1 for every rule but the `_noclip` ablation), seeds 0-2: `alfa reproduce table8` "
        "(`python scripts/table8.py` writes the shipped `results/table8.md`), configs by "
        "`alfa.paper.table8_cells.controlled_config` (shown for seed 0; `seed` is the only other "
        "key that changes). Every config also sets (away from the defaults): "
        + _settings([c for _, c in rows], keys)
        + ".",
        "",
        *_cell_table(rows, keys),
    ]


def _figure3() -> list[str]:
    mini = paper_config(*BASE_CELL).name
    cub = paper_config("table2", "mini_imagenet", "cub", "conv4", 5, 5, "alfa_maml").name
    return [
        "`alfa plot RUN` (`alfa.runs.plots.plot_hyperparameters`) writes "
        "`plots/hyperparameters.png` and the plotted values as `plots/hyperparameters.csv`: "
        "alpha and beta of every inner step and adapted tensor over 100 fixed test tasks "
        "(`--tasks`) of the run's test data. "
        "The paper plots ALFA+MAML on 4-CONV, trained on miniImageNet, on miniImageNet and on "
        f"CUB test tasks: `alfa plot` of a {_link('configs/paper', mini)} run and of a "
        f"{_link('configs/paper', cub)} run (trained on miniImageNet, tested on CUB).",
    ]


def run_here(root: Path) -> dict[str, str]:
    """What ``results/`` holds for each table (read from its JSON files)."""
    status = {t: "not run (no file in `results/`)" for t in TABLES}
    table8 = root / "results" / "table8.json"
    if table8.is_file():
        rows = json.loads(table8.read_text(encoding="utf-8"))["rows"]
        cells = sorted({(r["net"], r["shots"]) for r in rows})
        seeds = sorted({r["seed"] for r in rows})
        ran = ", ".join(f"{net} {shots}-shot" for net, shots in cells)
        left = [f"{n} {s}-shot" for n, s in PAPER_TABLE8 if (n, s) not in cells]
        status["table8"] = (
            f"run: {ran} (seeds {', '.join(map(str, seeds))}; "
            f"[results/table8.md](../results/table8.md)); not run: {', '.join(left) or 'none'}"
        )
    if (root / "results" / "metadataset_omniglot_minimal.json").is_file():
        status["table3"] = (
            "not run on Meta-Dataset; its pipeline on the minimal Omniglot sets: "
            "[results/metadataset_omniglot_minimal.md](../results/metadataset_omniglot_minimal.md)"
        )
    return status


BASE_CELL = ("table1", "mini_imagenet", "mini_imagenet", "conv4", 5, 5, "alfa_maml")
"""The recipe the switches are applied to when they are checked (ALFA+MAML, 4-CONV, 5-shot)."""


def check_switches() -> None:
    """Apply every switch to the :data:`BASE_CELL` recipe: a renamed key, a refused value or a
    module that is gone fails here."""
    base = config_to_dict(paper_config(*BASE_CELL))
    for what, _, overrides, module in SWITCHES:
        if importlib.util.find_spec(f"alfa.{module}") is None:
            raise ConfigError(f"paper switch '{what}': no module alfa.{module}")
        data = {section: dict(v) if isinstance(v, dict) else v for section, v in base.items()}
        for section, values in parse_overrides(overrides.split()).items():
            if isinstance(values, dict) and isinstance(data.get(section), dict):
                data[section].update(values)
            else:
                data[section] = values
        try:
            config_from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"paper switch '{what}': {exc}") from exc


def render_markdown(root: Path = Path(".")) -> str:
    """The text of ``docs/paper-map.md`` (``root``: the repository, for scripts and results)."""
    check_switches()
    status = run_here(root)
    out = [
        "# The paper, table by table, as configs",
        "",
        "<!-- Generated by `python -m alfa.paper.paper_map` from src/alfa/paper/recipes.py, "
        "src/alfa/paper/table8_cells.py and scripts/; edit those, "
        "not this file. -->",
        "",
        "Which config reproduces which table, figure and switch of *Meta-Learning with Adaptive",
        "Hyperparameters* (NeurIPS 2020). Each table lists the keys that tell its configs apart;",
        "every key is described in [config.md](config.md), the methods in",
        "[concepts.md](concepts.md).",
        "",
        "| paper | configs | run here |",
        "|---|---|---|",
    ]
    sources = {"table3": f"`{METADATASET_CONFIG.as_posix()}`", "table8": "`configs/sinusoid/`"}
    for table, title in TABLES.items():
        anchor = title.split(":")[0].lower().replace(" ", "-")
        where = sources.get(table, "`configs/paper/`" if table != "figure3" else "`alfa plot`")
        out.append(f"| [{title.split(':')[0]}](#{anchor}) | {where} | {status[table]} |")
    out += [
        "",
        "## Switches",
        "",
        "| paper | used in | config | implemented in |",
        "|---|---|---|---|",
    ]
    for what, where, overrides, module in SWITCHES:
        keys = " ".join(f"`{o}`" for o in overrides.split())
        out.append(f"| {what} | {where} | {keys} | `alfa.{module}` |")
    for table, title in TABLES.items():
        what = title.split(": ", 1)[1]
        out += ["", f"## {title.split(':')[0]}", "", f"{what[0].upper()}{what[1:]}.", ""]
        if table == "table3":
            out += _table3(root)
        elif table == "table8":
            out += _table8(root)
        elif table == "figure3":
            out += _figure3()
        else:
            out += _classification(table)
        if table == "table1" and (root / "results" / "omniglot_minimal.json").is_file():
            out += [
                "",
                "Not a cell of the paper: MAML, ALFA+MAML and ALFA+random init on the minimal "
                "Omniglot sets (`configs/omniglot/`), in "
                "[results/omniglot_minimal.md](../results/omniglot_minimal.md).",
            ]
        out += ["", f"Run here: {status[table]}."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m alfa.paper.paper_map [--check] [--root ROOT] [PATH]``: write or check it."""
    parser = argparse.ArgumentParser(prog="python -m alfa.paper.paper_map", description=__doc__)
    parser.add_argument("path", nargs="?", help="default: ROOT/docs/paper-map.md")
    parser.add_argument("--root", default=".", help="the repository (default: .)")
    parser.add_argument("--check", action="store_true", help="exit 1 if out of date")
    args = parser.parse_args(argv)
    root = Path(args.root)
    path = Path(args.path) if args.path else root / DOCS_PATH
    text = render_markdown(root)
    return write_or_check(
        path, text, check=args.check, command="python -m alfa.paper.paper_map", problems=False
    )


if __name__ == "__main__":
    sys.exit(main())
