"""Rough edges found by probing the CLI (issue 12): each was a traceback, a silent wrong answer or
a lost record; each is now one line with exit code 2 (or a warning), with nothing lost."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
from pathlib import Path

import pytest
import torch

from alfa.cli.main import main
from alfa.runs.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from alfa.runs.runlog import read_metrics
from metahelpers import TINY

HUGE = 2**80


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``alfa ARGV`` in this process: exit code, stdout, stderr."""
    try:
        code = main([*argv])
    except SystemExit as exc:  # argparse's own errors and --help
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str, *words: str) -> str:
    """The one ``alfa: error:`` line, holding every word; no traceback."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("alfa: error: ")]
    assert len(errors) == 1, err
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def train(run: Path, *extra: str) -> None:
    assert main(["train", *TINY, *extra, "--run-dir", str(run), "--no-progress"]) == 0


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run: checkpoints at 10 and 20, best.pt, validations at 10 and 20."""
    run = tmp_path_factory.mktemp("rough") / "run"
    train(run)
    return run


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    """A copy of the finished run that a test may change."""
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- TensorBoard ---------------------------------------------------------------------------------


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of a run as TensorBoard shows it: the event files in the order
    they were written, a session start with a purge step dropping the points from that step on.

    (Ordered by the time inside each file: file names hold whole seconds and a per-process
    counter, so two files of one second may not sort in the order they were written.)
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog

    files = [list(EventFileLoader(str(p)).Load()) for p in (run / "tensorboard").iterdir()]
    points: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(files, key=lambda events: events[0].wall_time):
        for event in events:
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                points = {k: [(s, v) for s, v in p if s < event.step] for k, p in points.items()}
            for value in event.summary.value:
                number = value.simple_value if value.HasField("simple_value") else None
                if number is None:  # written as a tensor by newer writers
                    number = float(value.tensor.float_val[0])
                points.setdefault(value.tag, []).append((event.step, number))
    return {tag: sorted(p) for tag, p in points.items() if p}


def test_tensorboard_keeps_every_point_across_resumes(run, capsys):
    pytest.importorskip("tensorboard")
    assert len(list((run / "tensorboard").iterdir())) == 1
    before = _scalars(run)
    assert [s for s, _ in before["train/loss"]] == [5, 10, 15, 20]
    assert [s for s, _ in before["val/mse"]] == [10, 20]
    # resuming a finished run rewrites nothing, so it must keep every point
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert _scalars(run) == before
    # a run stopped after its checkpoint at 10 is resumed there: 10 itself stays
    for name in ("step-0000020.pt", "best.pt"):
        (run / "checkpoints" / name).unlink()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    after = _scalars(run)
    assert [s for s, _ in after["train/loss"]] == [5, 10, 15, 20]
    assert [s for s, _ in after["val/mse"]] == [10, 20]
    assert after == before  # the resumed part is written again, identically
    # extending it keeps the old points and adds the new ones
    assert main(["train", "--resume", str(run), "train.iterations=30", "--no-progress"]) == 0
    extended = _scalars(run)
    assert [s for s, _ in extended["train/loss"]] == [5, 10, 15, 20, 25, 30]
    assert extended["train/loss"][:4] == before["train/loss"]
    assert [s for s, _ in extended["val/mse"]] == [10, 20, 30]


# --- eval reports the checkpoint it used --------------------------------------------------------


def test_eval_json_names_the_checkpoint_actually_used(tmp_path, capsys):
    run = tmp_path / "run"
    train(run, "train.val_every=0")  # no validation, so no best.pt
    assert not (run / "checkpoints" / "best.pt").exists()
    code, out, _ = run_cli(capsys, "eval", str(run), "--tasks", "5", "--json")
    assert code == 0
    assert json.loads(out.splitlines()[-1])["checkpoint"] == "step-0000020.pt"


def test_eval_json_names_best_pt_when_it_is_used(finished, capsys):
    code, out, _ = run_cli(capsys, "eval", str(finished), "--tasks", "5", "--json")
    assert code == 0
    assert json.loads(out.splitlines()[-1])["checkpoint"] == "best.pt"


# --- edited configs on resume -------------------------------------------------------------------


def _edit(run: Path, old: str, new: str) -> None:
    path = run / "config.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    "old, new, key",
    [("seed: 0", "seed: 5", "seed"), ("  lr: 0.001", "  lr: 0.01", "meta.lr")],
)
def test_resume_refuses_an_edited_config(run, capsys, old, new, key):
    _edit(run, old, new)
    before = snapshot(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--no-progress")
    assert code == 2
    error_line(err, key, "step-0000020.pt", "config")
    assert snapshot(run) == before


def test_resume_accepts_an_edit_of_a_key_that_may_change(run, capsys):
    _edit(run, "iterations: 20", "iterations: 30")
    _edit(run, "\n  tasks: 10", "\n  tasks: 7")  # eval.*
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert load_checkpoint(list_checkpoints(run / "checkpoints")[-1])["iteration"] == 30


def test_resume_extends_a_run_with_train_iterations(run, capsys):
    code, out, err = run_cli(
        capsys, "train", "--resume", str(run), "train.iterations=30", "--no-progress"
    )
    assert code == 0, err
    assert "finished 30 iterations" in out
    assert "iterations: 30" in (run / "config.yaml").read_text()
    assert max(r["iteration"] for r in read_metrics(run / "metrics.jsonl")) == 30
    # and a later plain resume sees the extended run as finished
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert {k: v for k, v in snapshot(run).items() if "tensorboard" not in k} == {
        k: v for k, v in before.items() if "tensorboard" not in k
    }


@pytest.mark.parametrize(
    "override, words",
    [
        ("seed=3", ["'seed'", "--resume"]),
        ("meta.lr=0.1", ["'meta.lr'", "--resume"]),
        ("train.iterations=10", ["train.iterations", "below"]),
        ("train.iteratons=30", ["'train.iteratons'", "did you mean"]),
    ],
)
def test_resume_refuses_overrides_of_keys_that_may_not_change(run, capsys, override, words):
    before = snapshot(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), override, "--no-progress")
    assert code == 2
    error_line(err, *words)
    assert snapshot(run) == before


# --- the lock file ------------------------------------------------------------------------------


def test_no_lock_file_is_left_after_a_run_or_an_error(tmp_path, run, capsys):
    new = tmp_path / "new"
    train(new)
    assert not (new / ".lock").exists()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert not (run / ".lock").exists()
    _edit(run, "seed: 0", "seed: 5")  # refused after the lock was taken
    code, _, _ = run_cli(capsys, "train", "--resume", str(run), "--no-progress")
    assert code == 2 and not (run / ".lock").exists()


def _signal_at_first_checkpoint(monkeypatch, *signals: int) -> None:
    """Deliver ``signals`` to this process while the first periodic checkpoint is written."""
    import alfa.runs.train

    real = alfa.runs.train.save_checkpoint
    sent = []

    def save(path: Path, state: dict) -> None:
        real(path, state)
        if path.name.startswith("step-") and not sent:
            for signum in signals:
                sent.append(signum)
                os.kill(os.getpid(), signum)
                for _ in range(1000):  # let the handler run before the next signal
                    pass

    monkeypatch.setattr(alfa.runs.train, "save_checkpoint", save)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_no_lock_file_is_left_after_a_stop(tmp_path, capsys, monkeypatch, signum):
    _signal_at_first_checkpoint(monkeypatch, signum)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *TINY, "--run-dir", str(run), "--no-progress")
    assert code == 128 + signum, err
    assert "stopped by" in err and not (run / ".lock").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_aborts_with_its_exit_code(tmp_path, capsys, monkeypatch, signum):
    _signal_at_first_checkpoint(monkeypatch, signum, signum)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *TINY, "--run-dir", str(run), "--no-progress")
    assert code == 128 + signum, err  # 143 for SIGTERM, as a process killed by it
    assert "Traceback" not in err and not (run / ".lock").exists()
    assert list_checkpoints(run / "checkpoints")  # the checkpoint written so far is kept


def test_a_lock_held_by_another_process_is_not_removed(run, capsys):
    fcntl = pytest.importorskip("fcntl")
    with open(run / ".lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = run_cli(capsys, "train", "--resume", str(run), "--no-progress")
        assert code == 2
        error_line(err, "in use")
        assert (run / ".lock").exists()


# --- resume with the periodic checkpoints gone --------------------------------------------------


def test_resume_without_periodic_checkpoints_keeps_the_log(run, capsys):
    for path in list_checkpoints(run / "checkpoints"):
        path.unlink()
    assert (run / "checkpoints" / "best.pt").is_file()
    before = snapshot(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--no-progress")
    assert code == 2
    error_line(err, str(run), "no periodic checkpoint", "best.pt", "iteration 20")
    assert snapshot(run) == before


# --- NaN weights ---------------------------------------------------------------------------------


def _poison(path: Path) -> None:
    state = load_checkpoint(path)
    name = next(k for k, v in state["learner"].items() if v.is_floating_point())
    state["learner"][name] = torch.full_like(state["learner"][name], float("nan"))
    save_checkpoint(path, state)


@pytest.mark.parametrize("choice", ["best", "last"])
def test_eval_refuses_nan_weights_naming_the_checkpoint(run, capsys, choice):
    for path in (run / "checkpoints").glob("*.pt"):
        _poison(path)
    code, out, err = run_cli(capsys, "eval", str(run), "--tasks", "5", "--checkpoint", choice)
    assert code == 2 and "nan" not in out
    name = "best.pt" if choice == "best" else "step-0000020.pt"
    error_line(err, name, "non-finite")


# --- numbers too large --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["seed", "eval.seed"])
def test_huge_seeds_are_one_line_and_create_nothing(in_tmp, capsys, key):
    code, _, err = run_cli(capsys, "train", *TINY, f"{key}={HUGE}", "--no-progress")
    assert code == 2
    error_line(err, f"'{key}'", str(HUGE))
    assert snapshot(in_tmp) == {} and not (in_tmp / "runs").exists()


def test_threads_beyond_the_bound(in_tmp, capsys):
    code, _, err = run_cli(capsys, "train", *TINY, "train.threads=100000")
    assert code == 2
    error_line(err, "'train.threads'", "1024", "100000")
    assert not (in_tmp / "runs").exists()


@pytest.fixture
def small_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with 16 GiB, whatever this one has (so the refusals below are deterministic)."""
    monkeypatch.setattr("alfa.runs.memory.host_memory", lambda: 16 * 2**30)


@pytest.mark.parametrize(
    "override, words",
    [
        (f"meta.batch_size={10**9}", ["meta.batch_size"]),
        ("model.hidden=[100000,100000]", ["model.hidden", "parameters", "smaller model"]),
    ],
)
def test_runs_that_cannot_fit_are_refused_before_allocating(
    in_tmp, capsys, small_machine, override, words
):
    code, _, err = run_cli(capsys, "train", *TINY, override, "--no-progress")
    assert code == 2
    error_line(err, "estimated", "GB", "16.0 GB", *words)
    assert snapshot(in_tmp) == {}


def test_eval_of_more_tasks_than_fit_is_refused(finished, capsys, small_machine):
    code, _, err = run_cli(capsys, "eval", str(finished), "--tasks", str(10**8))
    assert code == 2
    error_line(err, "estimated", "--tasks")


def test_the_shipped_configs_fit_on_a_small_machine(small_machine):
    from alfa.config import load_config
    from alfa.runs.memory import check_memory

    for path in sorted(Path(__file__).parents[1].glob("configs/*/*.yaml")):
        config = load_config(path)
        check_memory(config, torch.device("cpu"))


def test_eval_steps_are_bounded_and_warned_beyond_training(finished, capsys):
    code, _, err = run_cli(capsys, "eval", str(finished), "--steps", "100000")
    assert code == 2
    error_line(err, "--steps 100000", "at most 100")
    code, out, err = run_cli(capsys, "eval", str(finished), "--steps", "3", "--tasks", "5")
    assert code == 0 and "3 steps" in out
    warnings = [line for line in err.splitlines() if line.startswith("alfa: warning:")]
    assert len(warnings) == 1 and "trained with" in warnings[0] and "1" in warnings[0]


# --- bad counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["demo", "plot"])
@pytest.mark.parametrize("tasks", ["0", "-1", "-3"])
def test_demo_and_plot_refuse_task_counts_below_one(finished, in_tmp, capsys, command, tasks):
    before = snapshot(finished)
    demo = ["demo", "--runs", str(in_tmp / "demo")]
    argv = demo if command == "demo" else ["plot", str(finished)]
    code, _, err = run_cli(capsys, *argv, "--tasks", tasks)
    assert code == 2
    error_line(err, "--tasks", tasks)
    assert snapshot(finished) == before and not (in_tmp / "demo").exists()


# --- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "eval", "resume", "plot"])
def test_a_run_directory_name_over_255_bytes(in_tmp, capsys, command):
    long = "a" * 300
    (in_tmp / "runs").mkdir()
    argv = {
        "train": ["train", *TINY, "--run-dir", long],
        "eval": ["eval", long],
        "resume": ["train", "--resume", long],
        "plot": ["plot", long],
    }[command]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    error_line(err, "300 bytes", "255")
    assert snapshot(in_tmp) == {}


def test_a_run_name_over_the_folder_name_limit(in_tmp, capsys):
    (in_tmp / "runs").mkdir()
    code, _, err = run_cli(capsys, "train", *TINY, f"name={'a' * 300}")
    assert code == 2
    error_line(err, "'name'", "200 bytes")
    assert snapshot(in_tmp) == {}


@pytest.mark.parametrize("command", [["eval", "--checkpoint", "last"], ["train", "--resume"]])
def test_an_unlistable_checkpoint_folder(run, capsys, monkeypatch, command):
    folder = run / "checkpoints"
    real = pathlib.Path.iterdir

    def iterdir(self: Path):
        if self == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "iterdir", iterdir)
    before = snapshot(run)
    code, _, err = run_cli(capsys, *command, str(run))
    assert code == 2
    error_line(err, str(folder), "Permission denied")
    assert snapshot(run) == before


def test_plot_of_a_missing_or_plain_folder_creates_nothing(in_tmp, capsys):
    code, _, err = run_cli(capsys, "plot", "runs/missing")
    assert code == 2
    error_line(err, "runs/missing", "does not exist")
    assert not (in_tmp / "runs").exists()
    (in_tmp / "plain").mkdir()
    code, _, err = run_cli(capsys, "plot", "plain")
    assert code == 2
    error_line(err, "not an alfa run directory")
    assert list((in_tmp / "plain").iterdir()) == []


# --- damaged logs and checkpoints ---------------------------------------------------------------


@pytest.mark.parametrize(
    "line, words",
    [
        (b'{"split": "train", "iteration": 7, "loss": "\xff\xfe"}', ["line 3", "UTF-8"]),
        (b"[1, 2, 3]", ["line 3", "metrics record"]),
        (b'{"split": "train", "iteration": "abc"}', ["line 3", "metrics record"]),
        (b"not json at all", ["line 3", "not valid JSON"]),
    ],
)
@pytest.mark.parametrize("command", ["resume", "plot"])
def test_a_damaged_metrics_log(run, capsys, line, words, command):
    path = run / "metrics.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:2], line + b"\n", *lines[2:]]))
    before = snapshot(run)
    argv = ["train", "--resume", str(run)] if command == "resume" else ["plot", str(run)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    error_line(err, "metrics.jsonl", *words)
    assert snapshot(run) == before


def test_a_torn_last_log_line_is_still_ignored(run, capsys):
    path = run / "metrics.jsonl"
    path.write_bytes(path.read_bytes() + b'{"split": "tr')
    records = read_metrics(path)
    assert len(records) == 6
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert read_metrics(path) == records


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda s: s.pop("window"), "window"),
        (lambda s: s.update(window={"loss": 1.0}), "window"),
        (lambda s: s.update(best="x"), "best"),
        (lambda s: s.update(iteration="abc"), "iteration"),
        (lambda s: s.update(top=[["a", 3]]), "top"),
        (lambda s: s.pop("optimizer"), "optimizer"),
    ],
)
def test_a_checkpoint_with_a_valid_checksum_but_a_bad_state(run, capsys, change, key):
    path = run / "checkpoints" / "step-0000020.pt"
    state = load_checkpoint(path)
    change(state)
    save_checkpoint(path, state)
    before = snapshot(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--no-progress")
    assert code == 2
    error_line(err, str(path), key)
    assert snapshot(run) == before


# --- reproduce ----------------------------------------------------------------------------------


def test_reproduce_help_names_real_cells(capsys):
    code, help_text, _ = run_cli(capsys, "reproduce", "--help")
    assert code == 0 and "table8" in help_text and "omniglot" in help_text
    code, help_text, _ = run_cli(capsys, "reproduce", "table8", "--help")
    assert code == 0
    assert "40x2-k5-maml-s0" in help_text and "80x3-k20-alfa_maml-*" in help_text
    code, help_text, _ = run_cli(capsys, "reproduce", "omniglot", "--help")
    assert code == 0 and "20way-maml-s0" in help_text and "alfa_maml_stable" in help_text


def test_reproduce_unknown_cell_lists_the_cells(in_tmp, capsys):
    code, _, err = run_cli(capsys, "reproduce", "table8", "--only", "40x2-5-maml")
    assert code == 2
    error_line(err, "40x2-5-maml", "40x2-k5-maml-s0", "80x3-k20-alfa_maml-*")
    assert snapshot(in_tmp) == {} and not (in_tmp / "results").exists()


@pytest.mark.parametrize(
    "content, words",
    [
        (None, ["not a folder"]),
        (b"[{", ["table8.json", "not valid JSON"]),
        (b"\xff\xfe", ["table8.json", "not valid JSON"]),
        (b'{"a": 1}', ["table8.json", "list"]),
        (b"[3]", ["table8.json", "list"]),
        (b'{"rows": [{"net": "40x2", "shots": 5}]}', ["table8.json", "row 0", "method"]),
        (b'{"rows": [3]}', ["table8.json", "row 0"]),
    ],
)
def test_reproduce_refuses_bad_results(in_tmp, capsys, content, words):
    results = in_tmp / "results"
    if content is None:
        results.write_text("a file")
    else:
        results.mkdir()
        (results / "table8.json").write_bytes(content)
    before = snapshot(in_tmp)
    code, _, err = run_cli(
        capsys, "reproduce", "table8", "--results", str(results), "--only", "40x2-k5-maml-s0"
    )
    assert code == 2
    error_line(err, *words)
    assert snapshot(in_tmp) == before and not (in_tmp / "runs").exists()


# --- configs ------------------------------------------------------------------------------------


def test_a_duplicated_yaml_key_is_refused(in_tmp, capsys):
    path = in_tmp / "c.yaml"
    path.write_text("seed: 1\nmeta:\n  lr: 0.01\n  steps: 2\n  lr: 0.1\n")
    code, _, err = run_cli(capsys, "train", str(path))
    assert code == 2
    error_line(err, str(path), "'lr'", "lines 3 and 5")
    assert not (in_tmp / "runs").exists()
