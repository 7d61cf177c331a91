"""The row a pretrained model uses, chosen on validation alone (alfa.paper.row_choice)."""

from __future__ import annotations

import json

import pytest

from alfa.errors import AlfaError
from alfa.paper.omniglot_cells import METHODS, SEEDS
from alfa.paper.pretrained_recipe import main
from alfa.paper.row_choice import choose_row
from shared_paths import REPO


def _row(method, seed, best_val, *, ways=20, diverged=False):
    return {
        "ways": ways,
        "method": method,
        "seed": seed,
        "accuracy": None if diverged else 80.0,
        "ci95": None if diverged else 1.0,
        "iterations": 6000,
        "checkpoint_iteration": 3000,
        "diverged": "diverged at 3000" if diverged else None,
        "best_val": best_val,
    }


def _write(path, rows):
    path.write_text(json.dumps({"rows": rows}))


def _protocol(results, best, **diverged):
    """Every 20-way cell; ``best[method]`` lists its seeds' best validation accuracies."""
    rows = [
        _row(m, s, best.get(m, [50.0] * 3)[i], diverged=s in diverged.get(m, ()))
        for m in METHODS
        for i, s in enumerate(SEEDS)
    ]
    _write(results / "omniglot_protocol.json", rows)


@pytest.mark.parametrize("ways", [20, 5])
def test_each_shipped_model_uses_the_row_and_variant_validation_chooses(ways):
    choice = choose_row(REPO / "results", ways)
    doc = json.loads((REPO / "results" / "pretrained_omniglot.json").read_text())
    (entry,) = [m for m in doc["models"] if m["ways"] == ways]
    assert (choice.method, choice.variant) == (entry["method"], entry["variant"])
    assert (entry["method"], entry["variant"]) == ("alfa_maml", "jitter")  # as the docs say
    assert choice.reason().startswith("ALFA+MAML has the highest best validation accuracy")
    if "choice" in entry:  # trained with --method best: the entry records this very choice
        assert entry["choice"] == choice.as_dict()


def test_the_highest_mean_over_seeds_wins_not_the_highest_seed(tmp_path):
    _protocol(tmp_path, {"maml": [99.0, 60.0, 60.0], "learned_fixed": [80.0, 80.0, 80.0]})
    choice = choose_row(tmp_path, 20)
    assert (choice.method, choice.variant) == ("learned_fixed", None)
    assert choice.validation["maml"] == pytest.approx(73.0)
    assert choice.variants == {}  # no variant table


def test_a_row_that_diverged_in_a_seed_is_not_chosen_and_a_tie_goes_to_the_first(tmp_path):
    best = {"alfa_maml": [95.0] * 3, "maml": [70.0] * 3, "learned_fixed": [70.0] * 3}
    _protocol(tmp_path, best, alfa_maml=(1,))
    choice = choose_row(tmp_path, 20)
    assert choice.method == "maml" and "alfa_maml" not in choice.validation


def test_a_variant_is_added_only_when_it_is_higher_in_every_seed_where_both_ran(tmp_path):
    _protocol(tmp_path, {"alfa_maml": [90.0, 91.0, 92.0]})
    variant = tmp_path / "omniglot_protocol_jitter.json"
    _write(variant, [_row("alfa_maml", 0, 90.5), _row("alfa_maml", 1, 91.5)])
    choice = choose_row(tmp_path, 20)
    assert (choice.method, choice.variant) == ("alfa_maml", "jitter")
    assert choice.variants == {"jitter": [(0, 90.5, 90.0), (1, 91.5, 91.0)]}
    assert "Its jitter variant is higher" in choice.reason()
    _write(variant, [_row("alfa_maml", 0, 90.5), _row("alfa_maml", 1, 90.9)])
    choice = choose_row(tmp_path, 20)
    assert choice.variant is None and "Its jitter variant is not higher" in choice.reason()
    _write(variant, [_row("alfa_maml", 0, 99.0), _row("alfa_maml", 1, 99.0, diverged=True)])
    assert choose_row(tmp_path, 20).variant is None  # a variant that diverged is not added
    _write(variant, [_row("maml", 0, 99.0)])  # the variant never ran the chosen row
    assert choose_row(tmp_path, 20).variant is None


def test_the_choice_waits_for_every_cell_and_names_those_missing(tmp_path):
    _protocol(tmp_path, {})
    with pytest.raises(AlfaError, match=r"lacks 15 5-way cell\(s\) \(5way-maml-s0, "):
        choose_row(tmp_path, 5)
    rows = json.loads((tmp_path / "omniglot_protocol.json").read_text())["rows"]
    del rows[-1]["best_val"]
    _write(tmp_path / "omniglot_protocol.json", rows)
    with pytest.raises(AlfaError, match="cell 20way-alfa_maml_stable-s2 has no best validation"):
        choose_row(tmp_path, 20)


def test_the_choice_reads_tables_as_the_runner_does(tmp_path):
    """One reader: a variant's row the runner would refuse (no ci95) stops the choice too."""
    from alfa.paper.omniglot_run import report

    _protocol(tmp_path, {"alfa_maml": [90.0] * 3})
    variant = tmp_path / "omniglot_protocol_jitter.json"
    row = _row("alfa_maml", 0, 95.0)
    del row["ci95"]
    _write(variant, [row])
    with pytest.raises(AlfaError, match=r"omniglot_protocol_jitter.json' row 0 lacks .*ci95"):
        choose_row(tmp_path, 20)
    with pytest.raises(AlfaError, match=r"omniglot_protocol_jitter.json' row 0 lacks .*ci95"):
        report(tmp_path, "test", "jitter")


def test_the_recipe_refuses_best_before_training_in_one_line(tmp_path, capsys):
    _protocol(tmp_path, {})
    argv = ["--results", str(tmp_path), "--runs", str(tmp_path / "runs")]
    argv += ["--out", str(tmp_path / "out")]
    assert main(["--method", "best", "--ways", "5", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lacks 15 5-way cell(s)" in err
    assert main(["--method", "best", "--variant", "jitter", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--variant goes with a named --method" in err
    assert not (tmp_path / "runs").exists()


def test_the_results_page_says_why_a_chosen_row_was_chosen():
    from alfa.paper.pretrained_recipe import markdown

    doc = json.loads((REPO / "results" / "pretrained_omniglot.json").read_text())
    doc["models"] = [m for m in doc["models"] if m["ways"] == 20]
    assert "Chosen on validation" not in markdown(doc)  # the 20-way row was named
    choice = choose_row(REPO / "results", 20)
    doc["models"][0]["choice"] = choice.as_dict()
    md = markdown(doc)
    assert f"- 20-way: {choice.reason()}\n" in md.split("Chosen on validation", 1)[1]
    shipped = (REPO / "results" / "pretrained_omniglot.md").read_text()  # 5-way: --method best
    assert f"- 5-way: {choose_row(REPO / 'results', 5).reason()}\n" in shipped


@pytest.mark.slow
def test_a_recipe_run_with_best_trains_the_chosen_row_and_records_why(tmp_path, monkeypatch):
    from shared_paths import REAL_OMNIGLOT

    if not (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        pytest.skip("real Omniglot zips not available")
    monkeypatch.chdir(REPO)
    results = tmp_path / "res"
    results.mkdir()
    rows = [
        _row(m, s, 90.0 if m == "learned_fixed" else 80.0) | {"checkpoint_iteration": 2}
        for m in METHODS
        for s in SEEDS
    ]
    _write(results / "omniglot_protocol.json", rows)
    argv = ["--method", "best", "--ways", "20", "--results", str(results)]
    argv += ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    argv += ["--data", str(REAL_OMNIGLOT), "--tasks", "4", "--jobs", "1"]
    assert main(argv) == 0
    (entry,) = json.loads((results / "pretrained_omniglot.json").read_text())["models"]
    assert (entry["method"], entry["variant"], entry["iterations"]) == ("learned_fixed", None, 2)
    assert entry["choice"]["validation"]["learned_fixed"] == 90.0
    assert entry["command"].endswith("--method best --ways 20")
    config = (results / "pretrained_omniglot" / "omniglot-20way-twin" / "config.yaml").read_text()
    assert "learned_fixed" in config
    md = (results / "pretrained_omniglot.md").read_text()
    assert f"- 20-way: {entry['choice']['reason']}" in md
