"""The shipped Omniglot configs read their data from ``$ALFA_DATA``: a path in a config may name
environment variables, and one that is not set is one line naming it (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alfa.cli.main import main
from alfa.data._files import as_path
from alfa.errors import DataError
from shared_paths import OMNIGLOT_CONFIGS, REAL_OMNIGLOT, REPO
from test_rough_edges import error_line, run_cli

SHIPPED = sorted(OMNIGLOT_CONFIGS.glob("*.yaml"))


def test_paths_expand_environment_variables(monkeypatch):
    monkeypatch.setenv("ALFA_DATA", "/data/sets")
    monkeypatch.setenv("OTHER", "x")
    assert as_path("${ALFA_DATA}/omniglot/a.zip") == Path("/data/sets/omniglot/a.zip")
    assert as_path("$ALFA_DATA/b_$OTHER") == Path("/data/sets/b_x")
    assert as_path(Path("/files/$ALFA_DATA")) == Path("/files/$ALFA_DATA")  # a Path is a name


@pytest.mark.parametrize("value", [None, ""])
def test_an_unset_variable_is_named(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("ALFA_DATA", raising=False)
    else:
        monkeypatch.setenv("ALFA_DATA", value)
    with pytest.raises(DataError, match=r"uses \$ALFA_DATA, which is not set.*export ALFA_DATA="):
        as_path("${ALFA_DATA}/omniglot")


def test_every_shipped_omniglot_config_reads_alfa_data():
    assert len(SHIPPED) == 6
    for path in SHIPPED:
        root = yaml.safe_load(path.read_text())["data"]["root"]
        assert root == ",".join(
            f"${{ALFA_DATA}}/omniglot/images_background_small{i}.zip" for i in (1, 2)
        ), path


@pytest.mark.parametrize("command", ["train", "dry-run"])
def test_a_shipped_config_without_alfa_data(tmp_path, monkeypatch, capsys, command):
    monkeypatch.delenv("ALFA_DATA", raising=False)
    monkeypatch.chdir(REPO)
    run = tmp_path / "run"
    argv = ["train", str(SHIPPED[0]), "--run-dir", str(run), "--no-progress"]
    if command == "dry-run":  # checks the data, so it needs the variable too
        argv += ["--dry-run", "train.device=cpu"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    error_line(err, "$ALFA_DATA", "not set", "export ALFA_DATA=")
    assert not run.exists()


@pytest.mark.slow
def test_a_shipped_config_with_alfa_data_trains_and_evaluates(tmp_path, monkeypatch, capsys):
    if not (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        pytest.skip("real Omniglot zips not available")
    monkeypatch.setenv("ALFA_DATA", str(REAL_OMNIGLOT.parent))
    monkeypatch.chdir(REPO)  # the class lists are relative to the repository root
    run = tmp_path / "run"
    tiny = ["model.filters=4", "meta.batch_size=2", "train.iterations=2", "train.threads=1"]
    argv = ["train", str(OMNIGLOT_CONFIGS / "maml_5way_1shot.yaml"), *tiny]
    assert main([*argv, "--run-dir", str(run), "--no-progress"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())["data"]["root"]
    assert saved.startswith("${ALFA_DATA}/omniglot/")  # the run follows the variable
    capsys.readouterr()
    assert main(["eval", str(run), "--tasks", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["tasks"] == 4
