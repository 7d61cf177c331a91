"""``check_dataset`` / ``run_check``: exit 0 on good data, 2 and every problem on bad data."""

from __future__ import annotations

import pytest

from alfa.data.check import check_dataset, format_report, run_check


def test_good_folder_returns_zero(writer, capsys):
    root = writer.folder({"a": 20, "b": 21})
    assert run_check(str(root), None) == 0
    out = capsys.readouterr().out
    assert "format: folder (detected)" in out
    assert "2 classes, 41 images" in out and "min 20 / mean 20.5 / max 21" in out
    assert "30x26 (41)" in out
    assert "problems: none" in out


def test_every_problem_of_a_bad_folder_is_listed(writer, capsys):
    root = writer.folder({"a": 20, "b": 20, "few": 3}, modes=("RGB",))
    (root / "empty_one").mkdir()
    (root / "empty_two").mkdir()
    (root / "a" / "img_005.jpg").write_bytes(b"garbage bytes")
    (root / "b" / "img_008.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    writer.save(writer.image("L", (30, 26)), root / "b" / "grey.png")
    assert run_check(str(root), "folder") == 2
    out = capsys.readouterr().out
    for fragment in (
        "empty_one",
        "empty_two",
        "img_005.jpg",
        "img_008.png",
        "'few'",
        "mixed image modes",
        "format: folder (given)",
    ):
        assert fragment in out, fragment
    report = check_dataset(root)
    assert len(report.problems) == 6
    assert report.image_modes == {"RGB": 41, "L": 1}
    assert report.checked_images == 44


def test_missing_split_files_and_images_are_reported(writer):
    root = writer.mini_csv(classes=2, per_class=20)
    (root / "val.csv").unlink()
    sorted((root / "images").iterdir())[0].unlink()
    report = check_dataset(root)
    text = format_report(report)
    assert report.format == "mini_imagenet_csv"
    assert any("val.csv" in p for p in report.problems), text
    assert any("1 images listed in" in p for p in report.problems), text
    assert any("not the standard 64" in p for p in report.problems), text  # only 2 wnids
    assert [s.name for s in report.splits] == ["train", "test"]


def test_pickle_cache_is_checked_without_decoding(writer):
    root = writer.mini_pickle(classes=2, per_class=20)
    report = check_dataset(root, min_images=10)
    assert report.image_sizes == {"84x84": 120}
    assert all("standard" in p for p in report.problems)
    text = format_report(report)
    assert "pickles" in text and "restricted unpickler" in text  # says what loading one means


def test_only_pickle_formats_carry_the_pickle_note(writer):
    report = check_dataset(writer.mini_csv(classes=2, per_class=20), min_images=10)
    assert report.format == "mini_imagenet_csv"
    assert "restricted unpickler" not in format_report(report)


def test_unknown_format_and_missing_path(tmp_path, capsys):
    assert run_check(str(tmp_path / "absent"), None) == 2
    assert "absent" in capsys.readouterr().out
    assert run_check(str(tmp_path), "pngs") == 2
    assert "'pngs'" in capsys.readouterr().out
    assert run_check(str(tmp_path), None) == 2  # empty folder: format cannot be detected


def test_real_omniglot_passes(real_omniglot, capsys):
    assert run_check(str(real_omniglot), None) == 0
    out = capsys.readouterr().out
    assert "242 classes, 4840 images" in out
    assert "105x105 (4840)" in out


@pytest.mark.parametrize("limit", [1, 5])
def test_max_images_per_class(writer, limit):
    root = writer.folder({"a": 20, "b": 20})
    assert check_dataset(root, max_images_per_class=limit).checked_images == 2 * limit


def test_a_single_class_folder_is_a_problem(writer, capsys):
    root = writer.folder({"only": 20})
    assert run_check(str(root), None) == 2
    out = capsys.readouterr().out
    assert "problems: none" not in out
    assert "1 class(es)" in out and "no task can be drawn" in out
