"""Rough edges a new user hit: the evaluation protocol with random layers, image options of
``FewShotEpisodes``, ``--ensemble`` of a run that kept only ``best.pt``, a parameter that the
loss does not use."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import alfa
from alfa.cli.main import main
from alfa.config import load_config
from alfa.runs.evaluate import evaluate
from alfa.tasks.source import SinusoidSource


def test_evaluate_turns_random_layers_off_and_gives_the_mode_back():
    model = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Dropout(0.5), nn.Linear(40, 1))
    learner = alfa.MetaLearner(model, rule="maml", steps=2)
    source = SinusoidSource(load_config(None, []))
    assert learner.training
    first = evaluate(learner, source, tasks=20, seed=3, batch=10)
    second = evaluate(learner, source, tasks=20, seed=3, batch=10)
    assert first["mean"] == second["mean"]  # the fixed seeded protocol is fixed
    assert learner.training  # given back as it was
    learner.eval()
    assert evaluate(learner, source, tasks=20, seed=3, batch=10)["mean"] == first["mean"]
    assert not learner.training


def _drawings(root, dark_on_light: bool) -> None:
    """Two classes of 28x28 grey drawings: a stroke (row or column) on a plain background."""
    background, ink = (255, 0) if dark_on_light else (0, 255)
    for c in range(2):
        folder = root / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(3):
            pixels = np.full((28, 28), background, np.uint8)
            if c == 0:
                pixels[10 + i, :] = ink
            else:
                pixels[:, 10 + i] = ink
            Image.fromarray(pixels).save(folder / f"{i}.png")


def test_few_shot_episodes_from_a_folder_take_the_image_options_of_load_folder(tmp_path):
    _drawings(tmp_path / "dark", dark_on_light=True)
    _drawings(tmp_path / "bright", dark_on_light=False)
    options = dict(image_size=28, channels=1, ways=2, shots=1, query=1, meta_batch=1)
    inverted = alfa.FewShotEpisodes.from_folder(tmp_path / "dark", invert=True, **options)
    plain = alfa.FewShotEpisodes.from_folder(tmp_path / "bright", **options)
    # dark-on-light drawings inverted as the CLI prepares Omniglot: the same images as drawn
    # bright-on-dark
    assert torch.equal(
        inverted.sample(1).support_x.sort().values, plain.sample(1).support_x.sort().values
    )
    resampled = alfa.FewShotEpisodes.from_folder(
        tmp_path / "dark", resample="lanczos", in_memory=False, **options
    )
    assert resampled.in_channels == 1
    with pytest.raises(alfa.errors.DataError, match="unknown option 'colour'"):
        alfa.FewShotEpisodes.from_folder(tmp_path / "dark", colour=True, **options)


def test_ensemble_counts_best_pt_and_says_what_the_run_kept(tmp_path, capsys):
    from test_classification import _tiny, _write_folder_dataset

    data = _write_folder_dataset(tmp_path / "data")
    run = tmp_path / "run"
    val = f"data.val_split_file={tmp_path / 'test.txt'}"
    args = _tiny(data, "train.val_every=2", "train.val_tasks=4", val)
    assert main(["train", *args, "--run-dir", str(run), "--no-progress"]) == 0
    assert (run / "checkpoints" / "best.pt").is_file()
    capsys.readouterr()
    assert main(["eval", str(run), "--tasks", "4", "--ensemble", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds 1 (best.pt; the run kept train.keep_best=1)" in err
    assert "train with train.keep_best=2" in err


def test_each_invocation_of_a_run_records_its_provenance(tmp_path, capsys):
    import json
    import re
    import sys

    from alfa.runs.provenance import provenance, training_time
    from alfa.version import package_version

    run = tmp_path / "run"
    args = ["model.hidden=[4]", "meta.steps=1", "meta.batch_size=2", "train.val_every=0"]
    assert main(["train", *args, "train.iterations=2", "--run-dir", str(run), "--no-progress"]) == 0
    assert main(["train", "--resume", str(run), "train.iterations=3", "--no-progress"]) == 0
    lines = (run / "provenance.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["alfa_version"] == package_version()
    assert first["torch_version"] == torch.__version__
    assert first["device"] == "cpu" and first["engine"] == "fast"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["started"])
    assert re.fullmatch(r"[0-9a-f]{40}", first["commit"])  # this checkout's
    assert first["command"].startswith("python ")  # pytest's process
    script = provenance("cpu", argv=[f"{sys.prefix}/bin/alfa", "train", "my config.yaml"])
    assert script["command"] == "alfa train 'my config.yaml'"
    # each line ends with how its invocation ended; training_time adds them up
    second = json.loads(lines[1])
    assert (first["status"], first["iterations"]) == ("finished", [0, 2])
    assert (second["status"], second["iterations"]) == ("finished", [2, 3])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["ended"])
    total = round(first["train_seconds"] + second["train_seconds"], 1)
    assert training_time(run) == {"parts": 2, "seconds": total, "unmeasured": 0}


def test_the_training_time_of_a_run_counts_what_its_provenance_measured(tmp_path):
    import json

    from alfa.runs.provenance import FILE, finish_provenance, training_time

    run = tmp_path / "run"
    run.mkdir()
    assert training_time(run) == {"parts": 1, "seconds": 0.0, "unmeasured": 1}  # no file
    ended = {"started": "s", "ended": "e", "train_seconds": 60.0}
    killed = {"started": "s"}  # an invocation killed before it could record its end
    (run / FILE).write_text("\n".join(json.dumps(r) for r in (ended, killed, ended)) + "\n")
    assert training_time(run) == {"parts": 3, "seconds": 120.0, "unmeasured": 1}
    before = (run / FILE).read_bytes()
    finish_provenance(run, status="stopped", first=5, last=9, seconds=1.0)  # last line ended
    assert (run / FILE).read_bytes() == before
    (run / FILE).write_text(json.dumps(killed) + "\n" + '{"started": "s", "comm')  # torn line
    finish_provenance(run, status="stopped", first=5, last=9, seconds=1.0)
    assert training_time(run) == {"parts": 1, "seconds": 0.0, "unmeasured": 1}
    (run / FILE).write_text(json.dumps(killed) + "\n")
    finish_provenance(run, status="stopped", first=5, last=9, seconds=12.34)
    record = json.loads((run / FILE).read_text())
    assert (record["status"], record["iterations"], record["train_seconds"]) == (
        "stopped",
        [5, 9],
        12.3,
    )
    # damaged lines (not UTF-8, nested a million deep) are no records, and are kept as they are
    damaged = b'{"started": "\xff"}\n' + b"[" * 10**6 + b"\n"
    (run / FILE).write_bytes(damaged + json.dumps(killed).encode() + b"\n")
    assert training_time(run) == {"parts": 1, "seconds": 0.0, "unmeasured": 1}
    finish_provenance(run, status="finished", first=9, last=12, seconds=3.0)
    assert (run / FILE).read_bytes().startswith(damaged)
    assert training_time(run) == {"parts": 1, "seconds": 3.0, "unmeasured": 0}


def test_the_generic_engine_says_why_it_was_chosen(caplog):
    import logging

    model = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 1))
    with caplog.at_level(logging.INFO, logger="alfa"):
        learner = alfa.MetaLearner(model, rule="maml", steps=1)
    assert learner.engine == "generic"
    assert learner.engine_reason == (
        "the fast path does not take this model: it does not know the layer '2' (Dropout)"
    )
    assert "inner loop on the generic engine" in caplog.text and "(Dropout)" in caplog.text
    fast = alfa.MetaLearner(nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1)), steps=1)
    assert fast.engine == "fast" and fast.engine_reason is None


def test_alfa_models_lists_every_backbone_and_pretrained_model(capsys):
    from alfa.config.load import MODELS
    from alfa.models import BACKBONES
    from alfa.runs.pretrained import pretrained_names

    assert set(BACKBONES) == set(MODELS)
    capsys.readouterr()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in MODELS:
        assert f"\n  {name} " in out, name
    for name in pretrained_names():
        assert f"\n  {name}: omniglot " in out, name


def test_data_check_of_a_support_folder(tmp_path, capsys):
    support = tmp_path / "support"
    for i, name in enumerate(("cat", "dog")):
        (support / name).mkdir(parents=True)
        Image.new("L", (28, 28), 40 * i).save(support / name / "1.png")
    capsys.readouterr()
    assert main(["data", "check", str(support)]) == 2  # as a dataset: 1 image is too few
    assert "has only 1 images" in capsys.readouterr().out
    (support / "train").mkdir()  # a class may be named like a split
    Image.new("L", (28, 28), 90).save(support / "train" / "1.png")
    assert main(["data", "check", "--support", str(support)]) == 0
    out = capsys.readouterr().out
    assert "format: support" in out and "split support: 3 classes, 3 images" in out
    assert "problems: none" in out and "note:" not in out
    Image.new("L", (28, 28), 0).save(support / "cat" / "2.png")
    (support / "dog" / "2.png").write_bytes(b"not an image")
    assert main(["data", "check", "--support", str(support)]) == 2
    out = capsys.readouterr().out
    assert "note: the classes hold different numbers of images (cat 2, dog 2, train 1)" in out
    assert "problems (1):" in out and "2.png" in out
    (support / "dog" / "2.png").unlink()
    import shutil

    shutil.rmtree(support / "train")
    assert main(["data", "check", str(support)]) == 2  # 1 or 2 images: fewer than 20
    assert main(["data", "check", "--min-images", "1", str(support)]) == 0


def test_one_default_rule_for_configs_and_python():
    import inspect

    from alfa.config import RuleConfig
    from alfa.config.schema import DEFAULT_RULE
    from alfa.models import MLP

    default = inspect.signature(alfa.MetaLearner).parameters["rule"].default
    assert default == RuleConfig().name == load_config(None, []).rule.name == DEFAULT_RULE
    assert type(alfa.MetaLearner(MLP((4,)), steps=1).rule) is alfa.MAML


class _WithUnused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(1, 1)
        self.unused = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def test_a_parameter_outside_the_loss_gets_a_zero_gradient_and_one_warning():
    """MAML leaves it as it is and adapts the rest exactly as without it; said once."""
    torch.manual_seed(0)
    model = _WithUnused()
    plain = nn.Module()
    plain.used = copy.deepcopy(model.used)  # the same parameter names, none unused
    plain.forward = plain.used.forward
    x, y = torch.randn(2, 5, 1), torch.randn(2, 5, 1)
    with pytest.warns(UserWarning, match=r"'unused\.weight', 'unused\.bias'.*take no part") as seen:
        adapted, _ = alfa.MetaLearner(model, rule="maml", steps=2, engine="generic").adapt(x, y)
        alfa.MetaLearner(model, rule="maml", steps=2, engine="generic").adapt(x, y)
    assert sum("take no part" in str(w.message) for w in seen) == 2  # once per learner
    for name in ("unused.weight", "unused.bias"):
        assert torch.equal(
            adapted[name], getattr(model.unused, name.split(".")[1]).expand_as(adapted[name])
        )
    reference, _ = alfa.MetaLearner(plain, rule="maml", steps=2, engine="generic").adapt(x, y)
    for name in ("used.weight", "used.bias"):
        assert torch.allclose(adapted[name], reference[name], atol=0, rtol=0)
