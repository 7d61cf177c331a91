"""Config values and paths: numbers too large for any model, YAML nested thousands deep, NUL
bytes, names longer than a file system allows, a class list that never ends, a config read from
a pipe or a device, a ``--timeout`` of infinity, and an address-space limit too small for the
run: one line each (exit code 2), nothing created."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from crafted import folder_dataset
from hostile_conftest import Case, check


def _dry(*overrides: str):
    def build(folder: Path) -> dict[str, Any]:
        return {"argv": ["train", *overrides, "--dry-run", "--run-dir", str(folder / "run")]}

    return build


def _deep_yaml(folder: Path) -> dict[str, Any]:
    (folder / "deep.yaml").write_text("model:\n  hidden: " + "[" * 5000 + "]" * 5000 + "\n")
    return {"argv": ["train", str(folder / "deep.yaml"), "--dry-run"]}


def _digits_yaml(folder: Path) -> dict[str, Any]:
    (folder / "digits.yaml").write_text("train:\n  iterations: " + "9" * 5000 + "\n")
    return {"argv": ["train", str(folder / "digits.yaml"), "--dry-run"]}


def _block_yaml(folder: Path) -> dict[str, Any]:
    lines = [" " * i + "- " for i in range(0, 2 * 3000, 2)]
    (folder / "deep.yaml").write_text("model:\n  hidden:\n" + "\n".join(lines) + "1\n")
    return {"argv": ["train", str(folder / "deep.yaml"), "--dry-run"]}


def _run_dir(name: str):
    def build(folder: Path) -> dict[str, Any]:
        return {"argv": ["train", "train.iterations=1", "--run-dir", str(folder / name)]}

    return build


SMALL = ["model.name=conv4", "model.filters=2", "data.image_size=16", "meta.batch_size=1"]


def _long_data_root(folder: Path) -> dict[str, Any]:
    return {
        "argv": [
            "train",
            "data.name=folder",
            "data.query=1",
            f"data.root={folder / ('d' * 300)}",
            *SMALL,
            "--run-dir",
            str(folder / "run"),
        ]
    }


def _split_file(target: str):
    def build(folder: Path) -> dict[str, Any]:
        data = folder_dataset(folder / "data")
        return {
            "argv": [
                "train",
                "data.name=folder",
                "data.query=1",
                f"data.root={data}",
                f"data.split_file={target}",
                *SMALL,
                "--run-dir",
                str(folder / "run"),
            ]
        }

    return build


def _config_from(make: str):
    def build(folder: Path) -> dict[str, Any]:
        if make == "fifo":  # what a shell's <(cat cfg) gives: a pipe, written as it is read
            fifo = folder / "config.fifo"
            os.mkfifo(fifo)
            setup = (
                "import threading\n"
                "def write():\n"
                f"    with open({str(fifo)!r}, 'w') as fh:\n"
                "        fh.write('train: {iterations: 1}\\n')\n"
                "threading.Thread(target=write, daemon=True).start()\n"
            )
            argv = ["train", str(fifo), "--dry-run", "--run-dir", str(folder / "r")]
            return {"argv": argv, "setup": setup}
        return {"argv": ["train", make, "--dry-run"]}

    return build


def _timeout(value: str):
    def build(folder: Path) -> dict[str, Any]:
        return {
            "argv": ["train", "train.iterations=1", "--timeout", value, "--run-dir", str(folder)]
        }

    return build


TINY = [
    "train.iterations=4",
    "train.checkpoint_every=2",
    "train.log_every=2",
    "train.val_every=4",
    "train.val_tasks=4",
    "meta.batch_size=2",
    "meta.steps=1",
    "model.hidden=[4]",
    "train.threads=1",
]


def _out_of_memory_in_validation(folder: Path) -> dict[str, Any]:
    """A run whose first validation (after the checkpoint of iteration 2) runs out of memory."""
    setup = (
        "import alfa.runs.validation as v\n"
        "def evaluate(*args, **kwargs):\n"
        "    raise RuntimeError('[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
        "can\\'t allocate memory: you tried to allocate 81920000000 bytes')\n"
        "v.evaluate = evaluate\n"
    )
    argv = ["train", *TINY, "--run-dir", str(folder / "run"), "--no-progress"]
    return {"argv": argv, "setup": setup}


def _out_of_memory_at_start(folder: Path) -> dict[str, Any]:
    """A model the estimate would refuse, built with the estimate switched off."""
    setup = "import alfa.runs.train as t\nt.check_memory = lambda *a, **k: None\n"
    argv = ["train", *TINY, "model.hidden=[100000, 100000]", "--run-dir", str(folder / "run")]
    return {"argv": argv, "setup": setup}


CASES: dict[str, Case] = {
    "model.hidden=[10**19]": Case(_dry("model.hidden=[10000000000000000000]"), ("model.hidden",)),
    "model.hidden=[10**12, 10**12]": Case(
        _dry("model.hidden=[1000000000000, 1000000000000]"), ("model.hidden", "1048576")
    ),
    "meta.steps=10**30": Case(_dry("meta.steps=1000000000000000000000000000000"), ("meta.steps",)),
    "model.filters=10**19": Case(
        _dry(
            "data.name=folder",
            "data.root=x",
            "model.name=conv4",
            "model.filters=10000000000000000000",
        ),
        ("model.filters",),
    ),
    "model.hidden=[2**20, 2**20] (fits the bounds, not memory)": Case(
        _dry("model.hidden=[1048576, 1048576]"), ("needs an estimated", "smaller model")
    ),
    "train.iterations of 5000 digits": Case(
        _dry("train.iterations=" + "9" * 5000), ("train.iterations",)
    ),
    "a YAML list nested 5000 deep": Case(_deep_yaml, ("deep.yaml", "nested")),
    "a YAML integer of 5000 digits": Case(_digits_yaml, ("digits.yaml", "4300")),
    "a YAML block list nested 3000 deep": Case(_block_yaml, ("deep.yaml", "nested")),
    "an override nested 5000 deep": Case(
        _dry("model.hidden=" + "[" * 5000 + "]" * 5000), ("model.hidden", "nested")
    ),
    "a NUL byte in name": Case(_dry("name=a\0b"), ("'name'", "NUL")),
    "a NUL byte in data.root": Case(
        _dry("data.name=folder", "data.root=/tmp/a\0b", "model.name=conv4"), ("data.root", "NUL")
    ),
    "--run-dir with a component of 300 bytes": Case(_run_dir("r" * 300), ("300 bytes",)),
    "data.root with a component of 300 bytes": Case(_long_data_root, ("ddddd",)),
    "data.split_file=/dev/zero": Case(_split_file("/dev/zero"), ("/dev/zero",)),
    "alfa train /dev/zero": Case(_config_from("/dev/zero"), ("/dev/zero",)),
    "alfa train <(cat cfg)": Case(_config_from("fifo"), ("iterations: 1",), kind="ok"),
    "a model that fits the machine but not the address-space limit": Case(
        _dry("model.hidden=[12000, 12000]"), ("needs an estimated", "smaller model")
    ),
    "out of memory when a run starts": Case(_out_of_memory_at_start, ("out of memory",)),
    "out of memory in a validation": Case(
        _out_of_memory_in_validation,
        ("out of memory", "checkpoints already written are kept"),
        keep=(),
    ),
    "--timeout inf": Case(_timeout("inf"), ("--timeout",)),
    "--timeout nan": Case(_timeout("nan"), ("--timeout",)),
    "--timeout 1e300": Case(_timeout("1e300"), ("--timeout",)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_config(hostile, name):
    check(CASES[name], hostile[name])


def test_the_checkpoint_before_an_out_of_memory_is_kept(hostile, tmp_path):
    assert hostile["out of memory in a validation"]["rc"] == 2
    run = Path(hostile["out of memory in a validation"]["folder"]) / "run"
    from alfa.runs.checkpoint import load_checkpoint

    assert load_checkpoint(run / "checkpoints" / "step-0000002.pt")["iteration"] == 2


@pytest.mark.parametrize("limit_mib", [300, 500, 700])
def test_a_small_address_space_limit_is_one_line(tmp_path, limit_mib):
    """Under ``ulimit -v`` too small for PyTorch: one line, not an ImportError or BLAS abort."""
    limit = limit_mib * 2**20

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-m", "alfa", "train", "train.iterations=1", "--dry-run"],
        capture_output=True,
        text=True,
        preexec_fn=cap,
        cwd=tmp_path,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alfa: error: "), done.stderr
    assert "ulimit -v" in lines[0] and f"{limit_mib:.1f} MiB" in lines[0]
