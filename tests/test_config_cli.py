"""Discoverable config: ``alfa config show | keys``, ``alfa --version``, ``alfa train --dry-run``
and docs/config.md generated from the same source as ``alfa config keys``."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

import alfa.runs.memory
from alfa import version as version_module
from alfa.cli.main import main
from alfa.config.docs import field_comments, key_docs, render_markdown
from alfa.config.load import Config, _leaf_hints, config_to_dict, load_config
from alfa.runs.build import build_learner
from alfa.runs.dry_run import count_meta_parameters

ROOT = Path(__file__).resolve().parents[1]
SINUSOID = ROOT / "configs" / "sinusoid" / "alfa_maml.yaml"
PAPER = ROOT / "configs" / "paper"
OMNIGLOT = ROOT / "configs" / "omniglot" / "alfa_maml_5way_1shot.yaml"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``alfa ARGV`` in this process: exit code, stdout, stderr."""
    try:
        code = main([*argv])
    except SystemExit as exc:  # argparse's own exits (--version, usage errors)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The single ``alfa: error:`` line of ``err``, which holds nothing else."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith("alfa: error: "), err
    return lines[0]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory (the default run directory is relative to it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def roomy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with a petabyte of memory, so that dry runs do not depend on this one."""
    monkeypatch.setattr(alfa.runs.memory, "host_memory", lambda: 2**50)


# --- alfa --version ---------------------------------------------------------------------------


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--version")
    assert code == 0, err
    assert out.strip() == f"alfa {metadata.version('alfa-meta')}"


def test_version_falls_back_to_pyproject_when_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    monkeypatch.setattr(version_module.metadata, "version", missing)
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version_module.package_version() == expected
    monkeypatch.setattr(version_module, "PYPROJECT", ROOT / "no-such-pyproject.toml")
    assert version_module.package_version() == "unknown"


# --- alfa config show -------------------------------------------------------------------------


def test_config_show_prints_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "config", "show")
    assert code == 0, err
    assert yaml.safe_load(out) == config_to_dict(Config())


def test_config_show_applies_the_file_then_the_overrides(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\nrule:\n  name: alfa\n  lr: 0.5\n")
    code, out, err = run_cli(capsys, "config", "show", str(path), "seed=5", "meta.steps=2")
    assert code == 0, err
    shown = yaml.safe_load(out)
    assert shown["seed"] == 5  # the override wins over the file
    assert shown["rule"]["name"] == "alfa" and shown["rule"]["lr"] == 0.5  # the file's
    assert shown["meta"]["steps"] == 2
    assert shown["meta"]["batch_size"] == Config().meta.batch_size  # a default
    # what is shown is a config that loads back to the same thing
    again = tmp_path / "shown.yaml"
    again.write_text(out)
    assert load_config(again) == load_config(path, ["seed=5", "meta.steps=2"])


def test_config_show_takes_overrides_without_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "config", "show", "seed=3", "model.hidden=[8,8]")
    assert code == 0, err
    shown = yaml.safe_load(out)
    assert shown["seed"] == 3 and shown["model"]["hidden"] == [8, 8]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["missing.yaml"], ["missing.yaml", "does not exist"]),
        (["seed=abc"], ["seed", "integer"]),
        (["train.iteration=5"], ["train.iteration", "did you mean 'train.iterations'"]),
        (["meta.steps=0"], ["meta.steps", "at least 1"]),
        (["rule.name=sgd"], ["rule.name", "must be one of"]),
        (["BAD_YAML", "seed=1"], ["not valid YAML"]),
        (["DUPLICATE"], ["appears twice"]),
        (["GOOD", "notakeyvalue"], ["notakeyvalue", "key=value"]),
        (["data.name=omniglot"], ["data.query"]),
    ],
)
def test_config_show_bad_input_is_one_line_exit_2_as_train(
    capsys: pytest.CaptureFixture[str],
    empty_cwd: Path,
    argv: list[str],
    words: list[str],
) -> None:
    files = {
        "BAD_YAML": "seed: [1\n",
        "DUPLICATE": "seed: 1\nseed: 2\n",
        "GOOD": "seed: 1\n",
    }
    for name, text in files.items():
        (empty_cwd / f"{name}.yaml").write_text(text)
    argv = [f"{a}.yaml" if a in files else a for a in argv]
    code, out, err = run_cli(capsys, "config", "show", *argv)
    assert code == 2 and not out
    line = error_line(err)
    for word in words:
        assert word in line, (word, line)
    # the same input to `alfa train` (dry run or not) is refused with the same line
    code, _, err = run_cli(capsys, "train", *argv, "--dry-run")
    assert code == 2 and error_line(err) == line
    assert files_under(empty_cwd) == sorted(f"{name}.yaml" for name in files)


# --- alfa config keys and docs/config.md ------------------------------------------------------


def test_every_config_field_has_a_meaning() -> None:
    missing = [d.key for d in key_docs() if not d.meaning]
    assert not missing, f"give these fields a trailing # comment in config.py: {missing}"


def test_field_comments_come_from_config_py() -> None:
    comments = field_comments()
    assert comments[("MetaConfig", "steps")] == "S inner steps"
    assert comments[("DataConfig", "name")].startswith("sinusoid | omniglot")


def test_config_keys_lists_every_key_with_type_default_and_meaning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(capsys, "config", "keys")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["key", "type", "default", "meaning"]
    listed = [line.split()[0] for line in lines[1:]]
    assert listed == list(_leaf_hints())  # every leaf key, in the schema's order, once
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["meta.steps"].split()[:3] == ["meta.steps", "int", "5"]
    assert rows["meta.steps"].endswith("S inner steps")
    assert rows["model.hidden"].split()[1:5] == ["list", "of", "int", "[40,"]
    assert "maml | learned_fixed | alfa" in rows["rule.name"]
    assert rows["train.tf32"].split()[1:3] == ["bool", "false"]
    assert rows["name"].split()[1:3] == ["str", '""']


def test_config_keys_defaults_are_the_dataclass_defaults() -> None:
    for doc in key_docs():
        # a default as listed, given as an override, is the default itself
        value = "" if doc.default == '""' else doc.default
        assert load_config(None, [f"{doc.key}={value}"]) == Config(), doc.key


def test_config_keys_of_one_section(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "config", "keys", "rule")
    assert code == 0, err
    keys = [line.split()[0] for line in out.splitlines()[1:]]
    assert keys == [k for k in _leaf_hints() if k.startswith("rule.")]
    code, out, err = run_cli(capsys, "config", "keys", "meta.lr")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["meta.lr"]


def test_config_keys_of_an_unknown_section_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(capsys, "config", "keys", "optimiser")
    assert code == 2 and not out
    assert "'optimiser'" in error_line(err) and "rule" in error_line(err)


def test_docs_config_md_is_what_the_generator_writes() -> None:
    committed = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert committed == render_markdown(), "docs/config.md is stale: python -m alfa.config.docs"
    for doc in key_docs():
        assert f"| `{doc.key}` |" in committed


def test_config_docs_module_writes_and_checks(tmp_path: Path) -> None:
    out = tmp_path / "config.md"
    run = [sys.executable, "-m", "alfa.config.docs"]
    assert subprocess.run([*run, "--check", str(out)], capture_output=True).returncode == 1
    assert subprocess.run([*run, str(out)], capture_output=True).returncode == 0
    assert out.read_text(encoding="utf-8") == render_markdown()
    assert subprocess.run([*run, "--check", str(out)], capture_output=True).returncode == 0


def test_readme_links_the_config_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    using = readme.split("## Using it", 1)[1].split("\n## ", 1)[0]
    assert "(docs/config.md)" in using


# --- alfa train --dry-run ---------------------------------------------------------------------


def test_dry_run_prints_config_parameters_and_memory_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], empty_cwd: Path, roomy: None
) -> None:
    code, out, err = run_cli(
        capsys, "train", str(SINUSOID), "--dry-run", "seed=4", "train.device=cpu"
    )
    assert code == 0, err
    config = load_config(SINUSOID, ["seed=4", "train.device=cpu"])
    yaml_part = out.split("\n\n", 1)[0]
    assert yaml.safe_load(yaml_part) == config_to_dict(config)
    learner = build_learner(config, task="regression", in_channels=1)
    total = sum(p.numel() for p in learner.parameters() if p.requires_grad)
    assert f"meta-parameters: {total:,} (" in out
    assert "estimated peak memory on this machine: at least " in out
    assert "meta.batch_size=25" in out
    assert "run directory: runs/40x2-k5-alfa_maml (not created" in out
    assert files_under(empty_cwd) == []
    # an explicit --run-dir is not created either
    code, out, err = run_cli(
        capsys, "train", str(SINUSOID), "--dry-run", "--run-dir", "r/x", "train.device=cpu"
    )
    assert code == 0, err
    assert files_under(empty_cwd) == []


@pytest.mark.parametrize(
    "overrides",
    [
        ["rule.name=maml"],
        ["rule.name=alfa", "rule.l2f=true"],
        ["rule.name=learned_fixed", "rule.per_layer=false"],
        ["rule.name=alfa", "meta.init=random"],
        [
            "data.name=omniglot",
            "data.root=nowhere",
            "model.name=conv4",
            "model.filters=4",
            "data.image_size=28",
            "data.query=1",
            "rule.name=alfa",
        ],
        [
            "data.name=mini_imagenet",
            "data.root=nowhere",
            "model.name=conv4",
            "model.filters=4",
            "data.image_size=16",
            "data.query=1",
            "rule.name=alfa",
            "meta.init=random",
        ],
    ],
)
def test_dry_run_counts_the_meta_parameters_build_learner_trains(overrides: list[str]) -> None:
    config = load_config(None, overrides)
    channels = 1 if config.data.name in ("sinusoid", "omniglot") else 3
    task = "regression" if config.data.name == "sinusoid" else "classification"
    learner = build_learner(config, task=task, in_channels=channels)
    trained = sum(p.numel() for p in learner.parameters() if p.requires_grad)
    assert count_meta_parameters(config).total == trained


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        (OMNIGLOT, "uses $ALFA_DATA, which is not set"),
        (PAPER / "table1_mini_imagenet_conv4_5way_1shot_alfa_maml.yaml", "dataset path not found"),
        (
            PAPER / "table1_tiered_imagenet_resnet12_5way_5shot_alfa_random.yaml",
            "dataset path not found",
        ),
        (
            PAPER / "table2_mini_imagenet_to_cub_conv4_5way_5shot_maml_l2f.yaml",
            "dataset path not found",
        ),
    ],
    ids=["omniglot", "mini_imagenet", "tiered_imagenet", "mini_imagenet_to_cub"],
)
def test_dry_run_of_image_configs_refuses_data_that_is_not_there(
    capsys: pytest.CaptureFixture[str],
    empty_cwd: Path,
    roomy: None,
    monkeypatch: pytest.MonkeyPatch,
    path: Path,
    problem: str,
) -> None:
    monkeypatch.delenv("ALFA_DATA", raising=False)
    code, _, err = run_cli(capsys, "train", str(path), "--dry-run", "train.device=cpu")
    assert code == 2
    line = error_line(err)
    assert line.startswith("alfa: error: config key 'data.root': ") and problem in line, line
    assert files_under(empty_cwd) == []


def test_dry_run_checks_the_data_and_its_class_lists(
    capsys: pytest.CaptureFixture[str],
    roomy: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from shared_paths import REAL_OMNIGLOT

    if not (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        pytest.skip("real Omniglot zips not available")
    monkeypatch.chdir(ROOT)  # the config's class lists are relative to the repository root
    monkeypatch.setenv("ALFA_DATA", str(REAL_OMNIGLOT.parent))
    run_dir = tmp_path / "run"
    args = ["train", str(OMNIGLOT), "--dry-run", "--run-dir", str(run_dir), "train.device=cpu"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "data: data.root = " in out and "(omniglot)" in out
    assert "data: train class list: 812 classes" in out
    assert "data: test class list: 156 classes" in out
    monkeypatch.setenv("ALFA_DATA", str(tmp_path / "nowhere"))
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and "dataset path not found" in error_line(err)
    monkeypatch.setenv("ALFA_DATA", str(REAL_OMNIGLOT.parent))
    code, out, err = run_cli(capsys, *args, "data.split_file=missing.txt")
    line = error_line(err)
    assert code == 2 and "data.split_file: class list file not found: missing.txt" in line
    code, out, err = run_cli(capsys, *args, "data.name=mini_imagenet", "data.image_size=28")
    assert code == 2 and "holds format 'omniglot', which is not a mini_imagenet format" in (
        error_line(err)
    )
    assert not run_dir.exists()


def test_dry_run_refuses_a_run_that_cannot_fit(
    capsys: pytest.CaptureFixture[str], empty_cwd: Path
) -> None:
    code, out, err = run_cli(
        capsys,
        "train",
        "--dry-run",
        "model.hidden=[100000,100000]",
        "meta.batch_size=1000",
        "train.device=cpu",
    )
    assert code == 2
    line = error_line(err)
    assert "memory" in line and "model" in line
    assert "meta-parameters: 10,000,400,001" in out  # counted without allocating
    assert files_under(empty_cwd) == []


def test_dry_run_names_what_to_lower(
    capsys: pytest.CaptureFixture[str], empty_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alfa.runs.memory, "host_memory", lambda: 200_000)
    code, _, err = run_cli(capsys, "train", str(SINUSOID), "--dry-run", "train.device=cpu")
    assert code == 2
    line = error_line(err)
    assert "meta.batch_size" in line and "195.3 KB" in line
    assert files_under(empty_cwd) == []


def test_dry_run_of_a_resume_shows_the_changed_config_and_touches_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, roomy: None
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    config = load_config(None, ["train.iterations=100", "train.device=cpu"])
    (run / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    before = {p: p.read_bytes() for p in run.rglob("*")}
    code, out, err = run_cli(
        capsys, "train", "--resume", str(run), "--dry-run", "train.iterations=300"
    )
    assert code == 0, err
    shown = yaml.safe_load(out.split("\n\n", 1)[0])
    assert shown == config_to_dict(
        dataclasses.replace(config, train=dataclasses.replace(config.train, iterations=300))
    )
    assert {p: p.read_bytes() for p in run.rglob("*")} == before
    code, out, err = run_cli(capsys, "train", "--resume", str(run), "--dry-run", "seed=9")
    assert code == 2 and "seed" in error_line(err)
