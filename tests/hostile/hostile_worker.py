"""Runs hostile cases in one process under an address-space limit and reports each outcome.

Reads ``{"cap": BYTES, "cases": [...]}`` as JSON on stdin; a case is ``{"argv": [...]}`` (an
``alfa`` command, through :func:`alfa.cli.main.main`) or ``{"python": CODE}`` (Python run as
it is; an exception it raises is recorded). Optional ``env`` (variables set for the case),
``cwd``, ``setup`` (Python run before an ``argv`` case) and ``fsize`` (the largest file the
case may write: a full disk). Prints one JSON list: per case the exit code, stdout, stderr, the
exception escaping (a traceback: never expected), and the peak resident memory of the process
after the case (``VmHWM``, which only grows: a case's own peak is at most this).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import sys
import traceback


def _run(case: dict) -> dict:
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in case.get("env", {})}
    os.environ.update(case.get("env", {}))
    here = os.getcwd()
    os.chdir(case.get("cwd", here))
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    if "fsize" in case:  # a disk that is full after this many bytes of one file (EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (case["fsize"], limit[1]))
    result: dict = {"rc": None, "raised": None, "message": None, "traceback": None}
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if "argv" in case:
                from alfa.cli.main import main

                if "setup" in case:  # e.g. a patch that makes an allocation fail
                    exec(case["setup"], {"__name__": "__hostile__"})
                result["rc"] = main(case["argv"])
            else:
                try:
                    exec(case["python"], {"__name__": "__hostile__"})
                except Exception as exc:  # the Python API's error is the outcome
                    result["raised"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
                    result["message"] = str(exc)
                    classes = [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__]
                    result["classes"] = classes
    except SystemExit as exc:
        result["rc"] = exc.code if isinstance(exc.code, int) else 2
    except BaseException:  # anything escaping the command is a traceback
        result["traceback"] = traceback.format_exc()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        os.chdir(here)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    result["out"], result["err"] = out.getvalue(), err.getvalue()
    result["peak_rss"] = peak_rss()
    return result


def peak_rss() -> int:
    """The process's peak resident memory in bytes: ``VmHWM`` of its own address space (Linux
    keeps ``ru_maxrss`` across ``exec``, so it would start at the parent's size)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    spec = json.load(sys.stdin)
    resource.setrlimit(resource.RLIMIT_AS, (spec["cap"], spec["cap"]))
    import alfa.cli.main  # noqa: F401 - imported under the limit, as a command would be

    results = [_run(case) for case in spec["cases"]]
    sys.__stdout__.write(json.dumps(results))


if __name__ == "__main__":
    main()
