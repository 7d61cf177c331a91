"""The pretrained-model recipe (alfa.paper.pretrained_recipe): the protocol's config on other
classes, the budget its validation chose, a tested twin and an exported model."""

from __future__ import annotations

import json

import pytest

from alfa.cli.main import main as cli_main
from alfa.config import config_to_dict, leaf_keys
from alfa.errors import AlfaError
from alfa.paper.omniglot_cells import protocol_config
from alfa.paper.pretrained_recipe import main, pretrained_config, selected_iterations
from alfa.runs.export import read_export
from shared_paths import REAL_OMNIGLOT, REPO


def _table(path, rows):
    path.write_text(json.dumps({"rows": rows}))
    return path


def _row(method, seed, iteration, accuracy=80.0):
    return {
        "ways": 20,
        "method": method,
        "seed": seed,
        "accuracy": accuracy,
        "ci95": 1.0,
        "iterations": 6000,
        "checkpoint_iteration": iteration,
        "diverged": None if accuracy is not None else "diverged at 3",
    }


def test_the_runs_differ_from_the_protocol_only_in_classes_budget_and_validation():
    base = leaf_keys(
        config_to_dict(protocol_config(20, "learned_fixed", 0, 3500, variant="jitter"))
    )
    for part, split in (("twin", "minimal_train.txt"), ("model", "minimal_all.txt")):
        config = pretrained_config(20, "learned_fixed", part, 3500, variant="jitter")
        flat = leaf_keys(config_to_dict(config))
        changed = {k for k in base if base[k] != flat[k]}
        assert changed == {"name", "data.split_file", "data.val_split_file", "train.val_every"}
        assert flat["data.split_file"].endswith(split) and flat["train.val_every"] == 0
        assert flat["train.iterations"] == 3500 and flat["data.jitter_degrees"] == 10.0
        assert config.name == f"omniglot-20way-{part}"
    with pytest.raises(AlfaError, match="unknown part 'all'"):
        pretrained_config(20, "maml", "all", 10)


def test_the_budget_is_the_median_of_the_seeds_validation_choices(tmp_path):
    rows = [_row("maml", 0, 6000), _row("maml", 1, 4000), _row("maml", 2, 5500)]
    rows += [_row("alfa_maml", 0, 3000), _row("alfa_maml", 1, 500, accuracy=None)]
    table = _table(tmp_path / "t.json", rows)
    assert selected_iterations(table, 20, "maml") == 5500
    assert selected_iterations(table, 20, "alfa_maml") == 3000  # a diverged seed does not count
    with pytest.raises(AlfaError, match="no tested 5-way maml cell"):
        selected_iterations(table, 5, "maml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(AlfaError, match=r"bad\.json' is not valid JSON"):
        selected_iterations(tmp_path / "bad.json", 20, "maml")


@pytest.mark.slow
def test_a_short_recipe_exports_a_model_and_tests_its_twin(tmp_path, capsys, monkeypatch):
    if not (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        pytest.skip("real Omniglot zips not available")
    monkeypatch.chdir(REPO)
    results = tmp_path / "res"
    results.mkdir()
    _table(results / "omniglot_protocol.json", [_row("learned_fixed", 0, 2)])
    earlier = {"ways": 5, "method": "maml", "variant": None, "iterations": 7, "export": "x"}
    earlier |= {"test": {"mean": 0.5, "ci95": 0.01}, "command": "an earlier 5-way command"}
    earlier["within"] = {"alphabets": {}, "separate": {}}
    (results / "pretrained_omniglot.json").write_text(json.dumps({"models": [earlier]}))
    argv = ["--method", "learned_fixed", "--ways", "20", "--results", str(results)]
    argv += ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    argv += ["--data", str(REAL_OMNIGLOT), "--tasks", "4", "--jobs", "1"]
    import alfa.runs.evaluate as evaluation

    tested, evaluate = [], evaluation.evaluate
    monkeypatch.setattr(  # the model, trained on every alphabet, is not tested on seen classes
        evaluation,
        "evaluate",
        lambda *a, **k: tested.append(type(a[1]).__name__) or evaluate(*a, **k),
    )
    assert main(argv) == 0
    assert [name for name in tested if name != "PartSource"] == ["EpisodicSource"]  # the twin
    doc = json.loads((results / "pretrained_omniglot.json").read_text())
    entry, kept = doc["models"]  # the 5-way model of an earlier run is kept, after the 20-way
    assert kept == earlier
    assert entry["iterations"] == 2 and entry["test"]["tasks"] == 4
    for part in ("twin", "model"):  # one process trained each run and recorded its time
        spent = entry["training"][part]
        assert (spent["train_parts"], spent["train_parts_unmeasured"]) == (1, 0)
        assert 0 < spent["train_seconds_measured"] <= spent["train_seconds"]
    assert entry["command"].endswith("--method learned_fixed --ways 20")
    assert 0 < entry["test"]["mean"] < 1
    assert set(entry["within"]["alphabets"]) == {"Early_Aramaic"}
    assert set(entry["within"]["separate"]) == {"Tagalog"}
    exported = read_export(tmp_path / "out" / "omniglot-20way.safetensors")
    assert exported.iteration == 2 and exported.config.data.split_file.endswith("minimal_all.txt")
    assert len(exported.class_lists["train"]) == 4 * 242  # every alphabet, with rotations
    md = (results / "pretrained_omniglot.md").read_text()
    assert "learned fixed" in md and "omniglot-20way.safetensors" in md
    assert "- 5-way: `an earlier 5-way command`" in md and "(last process)" not in md
    twin = results / "pretrained_omniglot" / "omniglot-20way-twin"
    per_task = json.loads((twin / "per_task_accuracy.json").read_text())
    assert len(per_task) == 4 and abs(sum(per_task) / 4 - entry["test"]["mean"]) < 1e-6
    assert [p.name for p in (twin / "checkpoints").iterdir()] == ["step-0000002.pt"]
    assert (twin / "class_lists").is_dir()
    capsys.readouterr()  # the shipped twin is tested again from its own folder, to the same mean
    assert cli_main(["eval", str(twin), "--tasks", "4", "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["mean"] == pytest.approx(entry["test"]["mean"], abs=1e-9)
    model = results / "pretrained_omniglot" / "omniglot-20way-model"
    shipped = ["config.yaml", "metrics.jsonl", "provenance.jsonl"]
    assert sorted(p.name for p in model.iterdir()) == shipped
    assert (twin / "provenance.jsonl").is_file()
    assert set(entry["source"]) == {"commit", "modified_src"}
    # a row the table has not tested is refused in one line
    capsys.readouterr()
    assert main([*argv[:1], "maml", *argv[2:]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no tested 20-way maml cell" in err


def test_a_results_file_that_is_not_the_recipes_is_refused_before_training(tmp_path, capsys):
    results = tmp_path / "res"
    results.mkdir()
    _table(results / "omniglot_protocol.json", [_row("learned_fixed", 0, 2)])
    (results / "pretrained_omniglot.json").write_text('{"rows": []}')
    argv = ["--method", "learned_fixed", "--ways", "20", "--results", str(results)]
    assert main([*argv, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pretrained_omniglot.json' is not a" in err
    assert not (tmp_path / "runs").exists()


def test_the_shipped_page_is_the_recipe_s_rendering_of_its_json():
    from alfa.paper.pretrained_recipe import markdown

    doc = json.loads((REPO / "results" / "pretrained_omniglot.json").read_text())
    assert (REPO / "results" / "pretrained_omniglot.md").read_text() == markdown(doc)
