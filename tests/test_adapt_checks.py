"""``alfa adapt`` checks the images against the model's preprocessing (warns, or refuses with
``--strict``) and refuses more inner steps than the rule learned hyperparameters for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alfa.cli.main import main

MODEL = ["--pretrained", "omniglot-5way"]  # 28x28 grey, dark-on-light drawings, 5 inner steps


def _drawing(path: Path, k: int, *, dark_on_light: bool = True, size: int = 105) -> Path:
    """A stroke drawing like Omniglot's: ink on a plain background, a different shape per k."""
    background, ink = (255, 0) if dark_on_light else (0, 255)
    pixels = np.full((size, size), background, np.uint8)
    s = size // 8
    pixels[s * (1 + k % 5) : s * (2 + k % 5), s : 7 * s] = ink
    pixels[s : 7 * s, s * (1 + k % 3) : s * (1 + k % 3) + 2] = ink
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _support(root: Path, per_class=(1, 1, 1, 1, 1)) -> Path:
    for c, n in enumerate(per_class):
        for i in range(n):
            _drawing(root / f"char{c}" / f"{i}.png", c)
    return root


def _run(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["adapt", *MODEL, *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("alfa: warning: ")]


def test_images_like_the_training_ones_give_no_warning(tmp_path, capsys):
    support = _support(tmp_path / "support")
    query = _drawing(tmp_path / "q.png", 2)
    code, err = _run(capsys, str(support), str(query))
    assert code == 0 and _warnings(err) == []


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (
            lambda p: Image.fromarray(
                np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
            ).save(p),
            "is in colour; the model was trained on grey images",
        ),
        (lambda p: Image.new("L", (4, 4), 255).save(p), "smaller than half the model's input"),
        (lambda p: Image.new("L", (1, 1), 0).save(p), "smaller than half the model's input"),
        (lambda p: Image.new("RGBA", (105, 105), (0, 0, 0, 0)).save(p), "fully transparent"),
        (lambda p: Image.new("L", (105, 105), 255).save(p), "a single colour: nothing is drawn"),
        (lambda p: _drawing(p, 1, dark_on_light=False), "is light-on-dark (mean intensity 0.1"),
    ],
    ids=["colour-noise", "4x4", "1x1", "transparent", "blank", "white-on-black"],
)
def test_a_query_that_does_not_fit_is_warned_about_or_refused(tmp_path, capsys, make, problem):
    support = _support(tmp_path / "support")
    query = tmp_path / "query.png"
    make(query)
    code, err = _run(capsys, str(support), str(query))
    assert code == 0
    assert any(problem in w and "query.png" in w for w in _warnings(err)), err
    code, err = _run(capsys, str(support), str(query), "--strict")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("alfa: error: --strict: "), err
    assert problem in lines[0]


def test_uneven_shots_are_warned_about(tmp_path, capsys):
    support = _support(tmp_path / "support", per_class=(3, 1, 1, 1, 1))
    code, err = _run(capsys, str(support), str(_drawing(tmp_path / "q.png", 0)))
    assert code == 0
    (warning,) = _warnings(err)
    assert "the support classes hold different numbers of images (char0 3, char1 1" in warning
    assert "trained with 1 per class" in warning


def test_more_steps_than_the_rule_learned_need_force(tmp_path, capsys):
    support = _support(tmp_path / "support")
    query = str(_drawing(tmp_path / "q.png", 3))
    code, err = _run(capsys, str(support), query, "--steps", "10")
    assert code == 2
    assert "--steps 10 is more than the 5 inner steps the rule learned hyperparameters for" in err
    assert "add --force" in err
    code, err = _run(capsys, str(support), query, "--steps", "10", "--force")
    assert code == 0
    assert "reuse the learned hyperparameters of step 5" in err
    code, err = _run(capsys, str(support), query, "--steps", "1")  # fewer: allowed
    assert code == 0 and _warnings(err) == []
