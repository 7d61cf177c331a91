"""A run directory: its layout, the refusal of a folder that already holds a run, and the
advisory lock held while a run trains.

While a run trains, ``RUN_DIR/.lock`` holds an exclusive ``flock``, so the same run cannot be
trained by two processes (or two distributed jobs) at once; the operating system releases it even
when the process is killed, and :func:`unlock_run_dir` removes the file when training ends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import yaml

from alfa.config import Config, config_to_dict
from alfa.errors import AlfaError
from alfa.runs.checkpoint import atomic_write_bytes
from alfa.runs.reopen import check_path_names

__all__ = [
    "check_new_run_dir",
    "lock_run_dir",
    "prepare_new_run",
    "run_paths",
    "unlock_run_dir",
]

_RUN_ENTRIES = ("config.yaml", "metrics.jsonl", "checkpoints", "tensorboard")
"""What a run directory holds; any of them present means the folder already holds a run."""


def run_paths(run_dir: Path) -> dict[str, Path]:
    """The files and folders of a run directory."""
    return {
        "config": run_dir / "config.yaml",
        "checkpoints": run_dir / "checkpoints",
        "best": run_dir / "checkpoints" / "best.pt",
        "metrics": run_dir / "metrics.jsonl",
    }


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse a run directory that already holds a run (or is not a folder).

    Raises:
        AlfaError: naming the folder and how to continue the run in it instead.
    """
    check_path_names(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise AlfaError(f"run directory '{run_dir}' exists and is not a directory")
    held = [name for name in _RUN_ENTRIES if (run_dir / name).exists()]
    if held:
        raise AlfaError(
            f"run directory '{run_dir}' already holds a run ({', '.join(held)}); continue it with "
            f"'alfa train --resume {run_dir}' or choose another --run-dir"
        )


def _same_file(path: Path, handle: IO[str]) -> bool:
    """Whether ``path`` still names the file that ``handle`` has open."""
    try:
        named, held = os.stat(path), os.fstat(handle.fileno())
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def lock_run_dir(run_dir: Path) -> IO[str] | None:
    """Hold an exclusive lock on the run directory while training (released on exit or kill;
    :func:`unlock_run_dir` also removes the file)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks on this platform
        return None
    path = run_dir / ".lock"
    for _ in range(100):
        try:
            handle = open(path, "a")  # noqa: SIM115 - held for the whole run
        except OSError as exc:
            raise AlfaError(f"cannot use run directory '{run_dir}': {exc.strerror or exc}") from exc
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise AlfaError(
                f"run directory '{run_dir}' is in use by another 'alfa train' process"
            ) from exc
        if _same_file(path, handle):
            return handle
        # the previous holder removed the file between our open and our lock: lock the new one
        handle.close()
    raise AlfaError(  # pragma: no cover - another process keeps re-creating the file
        f"run directory '{run_dir}' is in use by another 'alfa train' process"
    )


def unlock_run_dir(handle: IO[str] | None, run_dir: Path) -> None:
    """Remove ``RUN_DIR/.lock`` (while still holding it, so no other holder loses it) and
    release the lock."""
    if handle is None:
        return
    try:
        path = run_dir / ".lock"
        if _same_file(path, handle):
            path.unlink(missing_ok=True)
    except OSError:  # pragma: no cover - a read-only folder: the stale file is harmless
        pass
    finally:
        handle.close()


def prepare_new_run(config: Config, run_dir: Path) -> IO[str] | None:
    check_new_run_dir(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlfaError(f"cannot create run directory '{run_dir}': {exc.strerror or exc}") from exc
    handle = lock_run_dir(run_dir)
    try:
        check_new_run_dir(run_dir)  # another process may have started here in the meantime
        text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
        atomic_write_bytes(run_paths(run_dir)["config"], text.encode())
    except BaseException:
        unlock_run_dir(handle, run_dir)
        raise
    return handle
