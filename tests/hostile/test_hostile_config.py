"""Config values and paths: numbers too large for any model, YAML nested thousands deep, NUL
bytes, names longer than a file system allows, a class list that never ends, a config read from
a pipe or a device, a ``--timeout`` of infinity, and an address-space limit too small for the
run: one line each (exit code 2), nothing created."""

from __future__ import annotations

import os
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


def _long_data_root(folder: Path) -> dict[str, Any]:
    return {
        "argv": [
            "train",
            "data.name=folder",
            "data.query=1",
            f"data.root={folder / ('d' * 300)}",
            "model.name=conv4",
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
                "model.name=conv4",
                "--run-dir",
                str(folder / "run"),
            ]
        }

    return build


def _config_from(make: str):
    def build(folder: Path) -> dict[str, Any]:
        if make == "fifo":
            fifo = folder / "config.fifo"
            os.mkfifo(fifo)
            # a writer that ends: the worker reads what a shell's <(cat cfg) would give
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child only writes the pipe
                try:
                    with open(fifo, "w") as fh:
                        fh.write("train: {iterations: 1}\n")
                finally:
                    os._exit(0)
            return {"argv": ["train", str(fifo), "--dry-run", "--run-dir", str(folder / "r")]}
        return {"argv": ["train", make, "--dry-run"]}

    return build


def _timeout(value: str):
    def build(folder: Path) -> dict[str, Any]:
        return {
            "argv": ["train", "train.iterations=1", "--timeout", value, "--run-dir", str(folder)]
        }

    return build


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
    "--timeout inf": Case(_timeout("inf"), ("--timeout",)),
    "--timeout nan": Case(_timeout("nan"), ("--timeout",)),
    "--timeout 1e300": Case(_timeout("1e300"), ("--timeout",)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_config(hostile, name):
    check(CASES[name], hostile[name])
