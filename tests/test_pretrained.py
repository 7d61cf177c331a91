"""The pretrained Omniglot models shipped in the package: listed, and better than chance on real
characters of the alphabets held out of the reported run (the shipped model was meta-trained on
all 8 minimal alphabets, so this checks that it works, not its held-out accuracy; the README
reports that from the 6/2-split run)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from alfa.cli.main import main
from alfa.runs.pretrained import pretrained_names, pretrained_path
from shared_paths import REAL_OMNIGLOT

HELD_OUT = ("Early_Aramaic", "Tagalog")


def _characters(ways: int, queries: int, tmp: Path) -> tuple[Path, list[Path], list[str]]:
    """The first ``ways`` held-out characters (sorted): drawing 1 as the support image, drawings
    2 .. queries+1 as query images, copied byte for byte from the zips."""
    zips = sorted(REAL_OMNIGLOT.glob("images_background_small*.zip"))
    if len(zips) != 2:
        pytest.skip("real Omniglot zips not available")
    drawings: dict[str, list[tuple[Path, str]]] = {}
    for archive in zips:
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                parts = name.split("/")
                if len(parts) == 4 and parts[1] in HELD_OUT and parts[3].endswith(".png"):
                    drawings.setdefault(f"{parts[1]}-{parts[2]}", []).append((archive, name))
    support, query_paths, labels = tmp / "support", [], []
    for character in sorted(drawings)[:ways]:
        files = sorted(drawings[character], key=lambda item: item[1])
        (support / character).mkdir(parents=True)
        for i, (archive, member) in enumerate(files[: queries + 1]):
            with zipfile.ZipFile(archive) as z:
                data = z.read(member)
            if i == 0:
                (support / character / "support.png").write_bytes(data)
            else:
                path = tmp / "query" / f"{character}-{i}.png"
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(data)
                query_paths.append(path)
                labels.append(character)
    return support, query_paths, labels


def test_pretrained_models_are_listed(capsys):
    assert {"omniglot-20way", "omniglot-5way"} <= set(pretrained_names())
    assert main(["adapt", "--pretrained", "list"]) == 0
    out = capsys.readouterr().out
    assert "omniglot-20way: omniglot 20-way 1-shot, 28x28 grey" in out
    assert "omniglot-5way: omniglot 5-way 1-shot, 28x28 grey" in out
    for name in ("omniglot-20way", "omniglot-5way"):
        assert pretrained_path(name).stat().st_size < 1_000_000  # well under "a few MB"
    assert main(["adapt", "--pretrained", "omniglot-7way", "s", "q.png"]) == 2
    assert "available: omniglot-20way, omniglot-5way" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "ways", "minimum"), [("omniglot-20way", 20, 0.5), ("omniglot-5way", 5, 0.6)]
)
def test_pretrained_model_classifies_real_characters(tmp_path, capsys, name, ways, minimum):
    support, queries, labels = _characters(ways, 3, tmp_path)
    capsys.readouterr()
    assert main(["adapt", "--pretrained", name, str(support), *map(str, queries), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    correct = sum(p["label"] == label for p, label in zip(predictions, labels, strict=True))
    accuracy = correct / len(labels)
    # chance is 1/ways; measured 52/60 (20-way) and 14/15 (5-way) with the shipped models
    assert accuracy >= minimum, (accuracy, 1 / ways)
