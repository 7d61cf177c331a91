"""Within-alphabet one-shot episodes (``alfa eval --episodes within-alphabet``): the episodes on
small data in the real Omniglot zip format, a learner whose accuracy is known, the command with
its errors, and the shipped 20-way model on the real minimal sets."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from alfa.cli.main import main
from alfa.data.omniglot import load_omniglot
from alfa.data.within_group import within_group_parts
from alfa.engine.meta_learner import MetaLearner
from alfa.errors import DataError
from alfa.runs.within_alphabet import evaluate_within_alphabet
from alfa.tasks.within_alphabet import WithinAlphabetSource
from metahelpers import TINY
from shared_paths import REAL_OMNIGLOT

SIZE = 105  # Omniglot's own size: loaded at it, the pixels are read back exactly
ALPHABETS = {"Alpha": 6, "Beta": 5, "Gamma": 3, "Delta": 1}
"""Characters per alphabet: ways=4 makes Alpha and Beta the main part, Gamma (3 characters) a
part of its own and Delta (1) skipped."""
DRAWINGS = 6


def _drawing(alphabet: int, character: int, drawer: int) -> bytes:
    """A 1-bit 105x105 PNG, black ink on white, that says what it is: rows 0-2 hold the
    alphabet, character and drawer numbers in binary; below them a pattern of the character
    and a few pixels of the drawer."""
    pixels = np.full((SIZE, SIZE), 255, dtype=np.uint8)
    for row, value in enumerate((alphabet, character, drawer)):
        for bit in range(8):
            if value >> bit & 1:
                pixels[row, bit] = 0
    rng = np.random.default_rng(alphabet * 100 + character)
    pixels[10:][rng.random((SIZE - 10, SIZE)) < 0.3] = 0
    noise = np.random.default_rng(10_000 + alphabet * 1000 + character * 10 + drawer)
    pixels[10:][noise.random((SIZE - 10, SIZE)) < 0.01] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def write_omniglot(folder: Path, alphabets: dict[str, int] = ALPHABETS) -> Path:
    """``images_background.zip`` as Omniglot ships it: a top folder, directory entries,
    ``<Alphabet>/characterNN/<id>_<drawer>.png``; and a class list of every character with its
    four rotations, as the shipped class lists name them."""
    members: dict[str, bytes] = {}
    lines = []
    number = 0
    for a, (alphabet, count) in enumerate(sorted(alphabets.items()), 1):
        for c in range(1, count + 1):
            number += 1
            for d in range(1, DRAWINGS + 1):
                name = f"images_background/{alphabet}/character{c:02d}/{number:04d}_{d:02d}.png"
                members[name] = _drawing(a, c, d)
            lines += [f"{alphabet}/character{c:02d}/rot{r:03d}" for r in (0, 90, 180, 270)]
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "images_background.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        dirs = sorted({m.rsplit("/", i)[0] + "/" for m in members for i in (1, 2, 3)})
        for d in dirs:
            zf.writestr(d, b"")
        for member, data in sorted(members.items()):
            zf.writestr(member, data)
    (folder / "classes.txt").write_text("\n".join(lines) + "\n")
    return archive


def _decode(image: torch.Tensor) -> tuple[int, int, int]:
    """(alphabet, character, drawer) of an episode image (inverted on loading: ink is 1)."""
    bits = image[0, :3, :8] > 0.5
    weights = 2 ** torch.arange(8)
    return tuple(int((row * weights).sum()) for row in bits)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("omniglot")
    archive = write_omniglot(folder)
    return load_omniglot(archive, split="all", class_list=folder / "classes.txt", image_size=SIZE)


NAMES = sorted(ALPHABETS)


def test_every_episode_is_unrotated_characters_of_one_alphabet(dataset):
    parts = within_group_parts(dataset, ways=4, shots=1)
    assert parts.query == DRAWINGS - 1  # every drawing that is not the support one
    for part in parts.parts:
        episodes = parts.episodes(part, num_tasks=8, seed=3, batch_size=3)
        for index in range(8):
            batch = episodes.task(index)
            alphabet = part.group_of(index)
            assert batch.support_x.shape[1] == part.ways
            assert batch.query_x.shape[1] == part.ways * parts.query
            codes = {label: [] for label in range(part.ways)}
            for images, labels, role in (
                (batch.support_x[0], batch.support_y[0], "support"),
                (batch.query_x[0], batch.query_y[0], "query"),
            ):
                for image, label in zip(images, labels, strict=True):
                    a, c, d = _decode(image)
                    # a rotated image would not decode to a valid alphabet number
                    assert NAMES[a - 1] == alphabet
                    codes[int(label)].append((c, d, role))
            characters = set()
            for entries in codes.values():
                assert len({c for c, _, _ in entries}) == 1  # one character per label
                characters.add(entries[0][0])
                support = {d for _, d, role in entries if role == "support"}
                query = {d for _, d, role in entries if role == "query"}
                assert len(support) == 1 and len(query) == DRAWINGS - 1
                assert not support & query  # disjoint drawings
            assert len(characters) == part.ways  # distinct characters


def test_fewer_characters_than_ways_is_a_part_of_its_own_and_one_character_is_skipped(dataset):
    parts = within_group_parts(dataset, ways=4, shots=1)
    main_part, *others = parts.parts
    assert main_part.name == "main" and not main_part.separate
    assert main_part.groups == ("Alpha", "Beta") and main_part.ways == 4
    assert [(p.name, p.ways, p.separate) for p in others] == [("Gamma", 3, True)]
    assert parts.skipped == (("Delta", 1),)
    # the groups take turns in the main part: every alphabet weighs alike
    assert [main_part.group_of(i) for i in range(5)] == ["Alpha", "Beta"] * 2 + ["Alpha"]
    # 3-way episodes hold all three characters of Gamma
    batch = parts.episodes(others[0], 2, seed=0).task(1)
    assert sorted(_decode(x)[1] for x in batch.support_x[0]) == [1, 2, 3]
    # with every alphabet large enough there is one part, with no separate one
    small = within_group_parts(dataset, ways=3, shots=1)
    assert [(p.name, p.groups) for p in small.parts] == [("main", ("Alpha", "Beta", "Gamma"))]


def test_episodes_are_fixed_by_the_seed(dataset):
    parts = within_group_parts(dataset, ways=4, shots=1)
    for part in parts.parts:
        one = parts.episodes(part, num_tasks=5, seed=7, batch_size=1)
        again = within_group_parts(dataset, ways=4, shots=1).episodes(part, 5, 7, batch_size=2)
        ones = torch.cat([one[i].support_x for i in range(len(one))])
        twos = torch.cat([again[i].support_x for i in range(len(again))])
        assert torch.equal(ones, twos)  # the same episodes whatever the batch size
        assert torch.equal(one[4].query_x, again[2].query_x)
        other = parts.episodes(part, num_tasks=5, seed=8)
        assert not all(torch.equal(one[i].query_x, other[i].query_x) for i in range(5))


def test_query_count_and_impossible_counts(dataset):
    parts = within_group_parts(dataset, ways=4, shots=2, query=3)
    batch = parts.episodes(parts.parts[0], 1, 0).task(0)
    assert batch.support_x.shape[1] == 4 * 2 and batch.query_x.shape[1] == 4 * 3
    with pytest.raises(DataError, match="fewer than"):
        within_group_parts(dataset, ways=4, shots=1, query=DRAWINGS)
    with pytest.raises(DataError, match="leaves none"):
        within_group_parts(dataset, ways=4, shots=DRAWINGS)
    ungrouped = dataset.select_classes(["Alpha/character01/rot000", "Beta/character01/rot000"])
    with pytest.raises(DataError, match="no group"):
        within_group_parts(ungrouped, ways=2)


class _Constant(nn.Module):
    """Logits that ignore the image: the prediction is always the largest of ``logits``."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


def test_a_learner_whose_accuracy_is_known(dataset):
    source = WithinAlphabetSource(dataset, ways=4, shots=1)
    # always output 3 (of 4): right for one class in four of a 4-way episode; in Gamma's
    # 3-way episodes output 3 stands for no class and is not scored, so it answers output 0:
    # right for one class in three
    learner = MetaLearner(_Constant([0.2, 0.1, 0.0, 1.0]), steps=1, task="classification")
    report = evaluate_within_alphabet(learner, source, tasks=6, seed=1, batch=4, steps=0)
    assert report["mean"] == pytest.approx(1 / 4) and report["ci95"] == pytest.approx(0)
    assert report["per_task"] == pytest.approx([1 / 4] * 6)
    assert report["task_alphabets"] == ["Alpha", "Beta"] * 3
    assert {k: v["tasks"] for k, v in report["alphabets"].items()} == {"Alpha": 3, "Beta": 3}
    assert report["alphabets"]["Alpha"]["characters"] == 6
    gamma = report["separate"]["Gamma"]
    assert gamma["ways"] == 3 and gamma["mean"] == pytest.approx(1 / 3)
    assert report["skipped"] == {"Delta": 1}
    assert (report["ways"], report["shots"], report["query"]) == (4, 1, DRAWINGS - 1)

    # nearest support image: a linear layer from zero, one step of plain SGD makes each
    # class's weights its support image, so a query goes to the most similar support drawing;
    # the characters' patterns make that its own character, every time
    linear = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 4))
    nn.init.zeros_(linear[1].weight)
    nn.init.zeros_(linear[1].bias)
    nearest = MetaLearner(
        linear, rule="maml", steps=1, lr=1.0, task="classification", engine="generic"
    )
    report = evaluate_within_alphabet(nearest, source, tasks=4, seed=2, batch=4)
    assert report["per_task"] == [1.0] * 4
    assert report["separate"]["Gamma"]["mean"] == 1.0


# --- the command ---------------------------------------------------------------------------------


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main([*argv])
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _error_line(err: str) -> str:
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("alfa: error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture(scope="module")
def omniglot_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-iteration 4-way 1-shot run on the small zip, tested on every class with rotations."""
    folder = tmp_path_factory.mktemp("data")
    archive = write_omniglot(folder)
    run = folder / "run"
    overrides = [
        "data.name=omniglot",
        f"data.root={archive}",
        f"data.split_file={folder / 'classes.txt'}",
        f"data.test_split_file={folder / 'classes.txt'}",
        "data.ways=4",
        "data.shots=1",
        "data.query=2",
        "data.image_size=28",
        "model.name=conv4",
        "model.filters=4",
        "meta.batch_size=2",
        "meta.steps=1",
        "train.iterations=2",
        "train.val_every=0",
        "train.threads=1",
        "eval.batch=3",
    ]
    assert main(["train", *overrides, "--run-dir", str(run), "--no-progress"]) == 0
    return run


def test_the_command_reports_per_alphabet_and_apart(capsys, omniglot_run):
    capsys.readouterr()
    code, out, err = _run_cli(
        capsys, "eval", str(omniglot_run), "--episodes", "within-alphabet", "--tasks", "4",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["protocol"] == "within-alphabet" and report["tasks"] == 4
    assert set(report["alphabets"]) == {"Alpha", "Beta"} and set(report["separate"]) == {"Gamma"}
    assert len(report["per_task"]) == 4 and report["iteration"] == 2
    assert "Gamma (3 characters, fewer than 4): 3-way episodes" in out
    assert "Delta (1 character): skipped" in out
    # the run trained on these characters: said, as for the standard episodes
    assert "15 of the 15 test characters are also meta-training classes" in err
    again = _run_cli(
        capsys, "eval", str(omniglot_run), "--episodes", "within-alphabet", "--tasks", "4",
        "--json", "--query", "2",
    )  # fmt: skip
    assert json.loads(again[1].strip().splitlines()[-1])["query"] == 2
    # an export file takes it too, with the same numbers
    export = omniglot_run.parent / "run.safetensors"
    assert main(["export", str(omniglot_run), "--to", str(export)]) == 0
    capsys.readouterr()
    code, out, _ = _run_cli(
        capsys, "eval", str(export), "--episodes", "within-alphabet", "--tasks", "4", "--json"
    )
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1])["per_task"] == report["per_task"]


def test_command_errors_are_one_line(capsys, omniglot_run, tmp_path):
    sinusoid = tmp_path / "sinusoid"
    assert main(["train", *TINY, "train.iterations=2", "--run-dir", str(sinusoid)]) == 0
    capsys.readouterr()
    code, _, err = _run_cli(capsys, "eval", str(sinusoid), "--episodes", "within-alphabet")
    assert code == 2
    assert "this run is sinusoid regression" in _error_line(err)
    code, _, err = _run_cli(
        capsys, "eval", str(omniglot_run), "--episodes", "within-alphabet",
        "data.test_name=folder", f"data.test_root={tmp_path}",
    )  # fmt: skip
    assert code == 2
    assert "this run's test data is folder, whose classes have no alphabets" in _error_line(err)
    code, _, err = _run_cli(capsys, "eval", str(omniglot_run), "--query", "3")
    assert code == 2 and "add --episodes within-alphabet" in _error_line(err)
    code, _, err = _run_cli(
        capsys, "eval", str(omniglot_run), "--episodes", "within-alphabet", "--query", "0"
    )
    assert code == 2 and "--query must be at least 1" in _error_line(err)
    code, _, err = _run_cli(
        capsys, "eval", str(omniglot_run), "--episodes", "within-alphabet", "--query", "9"
    )
    assert code == 2 and "fewer than" in _error_line(err)


# --- the real minimal sets ---------------------------------------------------------------------


@pytest.mark.slow
def test_the_shipped_20way_model_on_the_real_held_out_alphabets(capsys, monkeypatch, tmp_path):
    """Early_Aramaic (22 characters) gives 20-way episodes; Tagalog (17) is reported apart."""
    if not (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        pytest.skip("real Omniglot zips not available")
    monkeypatch.setenv("ALFA_DATA", str(REAL_OMNIGLOT.parent))
    monkeypatch.chdir(tmp_path)
    argv = ["eval", "--pretrained", "omniglot-20way", "--episodes", "within-alphabet"]
    code, out, err = _run_cli(capsys, *argv, "--tasks", "3", "--json", "eval.batch=3")
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert (report["ways"], report["shots"], report["query"]) == (20, 1, 19)
    assert report["alphabets"]["Early_Aramaic"]["characters"] == 22
    assert report["task_alphabets"] == ["Early_Aramaic"] * 3
    tagalog = report["separate"]["Tagalog"]
    assert tagalog["characters"] == 17 and tagalog["ways"] == 17
    # it saw these alphabets in training (better than chance by far: 1/20 and 1/17)
    assert "39 of the 39 test characters are also meta-training classes" in err
    assert report["mean"] > 0.5 and tagalog["mean"] > 0.5
