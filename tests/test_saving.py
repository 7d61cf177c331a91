"""A learner to and from a file from Python: ``alfa.save``/``alfa.load`` for any learner,
``alfa.export`` for the file ``alfa eval`` and ``alfa adapt`` take, ``alfa.pretrained``."""

from __future__ import annotations

import json
import re

import pytest
import safetensors
import torch
from torch import nn

import alfa
from alfa.cli.main import main
from alfa.errors import AlfaError, ArgumentError
from alfa.models.conv4 import Conv4
from alfa.runs.checkpoint import CheckpointError
from test_classification import _tiny, _write_folder_dataset


def _custom() -> alfa.MetaLearner:
    model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))
    return alfa.MetaLearner(model, rule="alfa", steps=3, lr=0.05)


def test_save_and_load_any_learner(tmp_path):
    torch.manual_seed(0)
    learner = _custom()
    path = alfa.save(learner, tmp_path / "mine.safetensors")
    torch.manual_seed(1)
    other = _custom()
    assert not torch.equal(
        other.state_dict()["model.0.weight"], learner.state_dict()["model.0.weight"]
    )
    assert alfa.load(path, into=other) is other
    for key, value in learner.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key
    with safetensors.safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert (meta["format"], meta["rule"], meta["steps"], meta["task"]) == (
        "alfa-weights",
        "ALFA",
        "3",
        "regression",
    )
    with pytest.raises(AlfaError, match=re.escape("pass it: alfa.load(path, into=learner)")):
        alfa.load(path)
    wider = alfa.MetaLearner(
        nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Dropout(0.1), nn.Linear(32, 1)),
        rule="alfa",
        steps=3,
    )
    with pytest.raises(CheckpointError, match=re.escape("'model.0.weight' has shape (16, 1)")):
        alfa.load(path, into=wider)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged"):
        alfa.load(path, into=other)
    with pytest.raises(ArgumentError, match=re.escape("ending in .safetensors")):
        alfa.save(learner, tmp_path / "mine.pt")


def test_a_learner_built_in_python_is_exported_for_the_command_line(tmp_path, capsys):
    """Built by hand like a config's 4-CONV ALFA+MAML learner, trained a little in Python,
    exported with that config: alfa eval and alfa adapt take the file; alfa.load rebuilds it."""
    data = _write_folder_dataset(tmp_path / "data")
    config = alfa.load_config(None, [*_tiny(data, "rule.name=alfa"), "rule.lr=0.05"])
    torch.manual_seed(0)
    model = Conv4(3, in_channels=3, filters=4, image_size=16)
    learner = alfa.MetaLearner(model, rule="alfa", steps=2, task="classification", lr=0.05)
    episodes = alfa.FewShotEpisodes.from_folder(
        data, image_size=16, ways=3, shots=1, query=2, meta_batch=2
    )
    optimiser = torch.optim.Adam(learner.parameters(), lr=1e-3)
    for _ in range(2):
        optimiser.zero_grad()
        learner(episodes.sample(2)).loss.backward()
        optimiser.step()
    path = alfa.export(learner, tmp_path / "model.safetensors", config=config, iteration=2)
    loaded = alfa.load(path)
    for key, value in learner.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not loaded.training
    capsys.readouterr()
    assert main(["eval", str(path), "--tasks", "6", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["tasks"] == 6 and result["iteration"] == 2
    support = tmp_path / "support"
    for c in (5, 6, 7):
        (support / f"c{c}").mkdir(parents=True)
        (support / f"c{c}" / "0.png").write_bytes((data / f"class{c}" / "0.png").read_bytes())
    query = str(data / "class6" / "1.png")
    assert main(["adapt", str(path), str(support), query, "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(prediction["probabilities"]) == {"c5", "c6", "c7"}
    # a preprocessing of one's own is kept (here: dark-on-light drawings, inverted)
    prep = {**alfa.runs.export.read_export(path).preprocessing.to_dict(), "invert": True}
    alfa.export(learner, tmp_path / "inverted.safetensors", config=config, preprocessing=prep)
    assert alfa.runs.export.read_export(tmp_path / "inverted.safetensors").preprocessing.invert
    # a config that does not build this learner is refused, naming the difference
    wrong = alfa.load_config(None, [*_tiny(data, "rule.name=alfa"), "model.filters=8"])
    with pytest.raises(ArgumentError, match=r"not the one config describes .*'model\.blocks\.0"):
        alfa.export(learner, tmp_path / "x.safetensors", config=wrong)


def test_pretrained_loads_a_shipped_model_and_leaves_the_threads_alone():
    threads = torch.get_num_threads()
    learner = alfa.pretrained("omniglot-5way")
    assert isinstance(learner, alfa.MetaLearner) and not learner.training
    assert learner.steps == 5 and learner.engine == "fast"
    assert torch.get_num_threads() == threads
    with pytest.raises(AlfaError, match="available: omniglot-20way, omniglot-5way"):
        alfa.pretrained("omniglot-7way")
