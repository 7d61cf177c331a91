"""Data-parallel meta-training over the processes of a ``torchrun`` job (``torch.distributed``).

**Contract: an N-process run equals the 1-process run.** Every process builds the same task
stream (seeded by ``config.seed``; meta-batch ``b`` never depends on the rank or the number of
processes) and adapts its own contiguous share of each meta-batch: tasks ``[r T/N, (r+1) T/N)``
of the ``T`` tasks (:func:`share`). The outer loss of Eq. 2 (and Eq. 6) is the mean over the
``T`` tasks, so with equal shares the mean over ranks of the per-rank mean losses, and of their
meta-gradients, is exactly the single-process loss and meta-gradient (up to floating-point
rounding; the tests compare 2 processes with 1 to 1e-6). A meta-batch that ``N`` does not divide
is refused: unequal shares would weight tasks unequally.

**Meta-gradient averaging: one ``all_reduce``, not DDP.** After the backward pass every
meta-parameter's gradient (the initialisation theta and the rule's phi and post-multipliers) and
the iteration's statistics (loss, mean alpha/beta per step, query accuracy, a stop request) are
packed into one flat tensor, summed over ranks with a single ``all_reduce`` and divided by
``N`` (:func:`mean_over_ranks`). DistributedDataParallel is not used: it hooks the module's
``forward`` and reduces buckets while the backward runs, which suits one forward per step over
``nn.Module`` calls, whereas the meta-learner's forward is a functional inner loop over per-task
weight copies (``torch.func`` or the closed-form fast path) whose meta-gradient flows to the
parameters only through the broadcast initialisation; DDP's unused-parameter search and buffer
broadcasts would add work and nothing else. One explicit reduction also keeps the order of
floating-point operations fixed and readable, and carries the statistics for free. The
meta-optimiser (Adam) then steps on identical gradients on every rank, so the meta-parameters
stay identical (checked at every checkpoint by :func:`check_same_parameters`).

**Rank 0 writes; the others compute.** Only rank 0 locks and writes the run directory (config,
``metrics.jsonl``, TensorBoard, checkpoints) and shows progress. Decisions that rank 0 alone can
make (the run directory, the checkpoint to resume from) are taken there and sent to every rank
(:func:`on_main`, :func:`broadcast`); an error there stops every rank with rank 0's message.

**Faults.** Collectives wait at most ``--timeout`` seconds (``init_process_group``'s timeout);
a rank that died or stopped answering makes the others stop with :class:`PeerError` instead of
hanging. The first rank that sees a NaN or inf names it, and every rank stops with that one
message (:func:`first_divergence`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from alfa.errors import AlfaError, ConfigError, DivergenceError

__all__ = [
    "DEFAULT_TIMEOUT",
    "PeerError",
    "World",
    "broadcast",
    "broadcast_parameters",
    "check_gpu_per_process",
    "check_same_parameters",
    "first_divergence",
    "gather",
    "launched",
    "mean_over_ranks",
    "on_main",
    "process_group",
    "restart_count",
    "share",
    "shared_error",
    "world",
]

T = TypeVar("T")

DEFAULT_TIMEOUT = 600.0
MAX_TIMEOUT = 30 * 86400.0  # PyTorch keeps a timeout in milliseconds of a 64-bit clock
"""Seconds a collective waits for the other processes before the job is declared broken."""

_ENVIRONMENT = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_timeout = DEFAULT_TIMEOUT


class PeerError(AlfaError):
    """Another process of the job died or did not answer in time (exit code 1: not bad input)."""

    exit_code = 1


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` processes (1 without a job)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes the run directory and talks to the console."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def world() -> World:
    """The current job (``World()`` when no process group is initialised)."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher setting
    ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ


def restart_count() -> int:
    """How often ``torchrun --max-restarts`` restarted the job (0 on the first attempt)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def shared_error(exc: BaseException) -> BaseException:
    """Mark an error that every rank raises alike, so only rank 0 prints it."""
    exc.every_rank = True  # type: ignore[attr-defined]
    return exc


def _per_machine(local: int) -> int:
    """Processes of the job on this machine: torchrun's ``LOCAL_WORLD_SIZE`` (at least
    ``local + 1``)."""
    try:
        return max(int(os.environ.get("LOCAL_WORLD_SIZE", "0")), local + 1)
    except ValueError:
        return local + 1


def _backend(local: int = 0) -> str:
    """Gloo for CPU tensors, and NCCL for CUDA tensors when CUDA is present with a GPU for
    every process of this machine (otherwise gloo alone: a CPU job runs, and a CUDA one is
    refused with :func:`check_gpu_per_process` instead of failing inside NCCL)."""
    dist = _dist()
    if not (torch.cuda.is_available() and dist.is_nccl_available()):
        return "gloo"
    if _per_machine(local) > torch.cuda.device_count():
        return "gloo"
    return "cpu:gloo,cuda:nccl"


def _environment() -> tuple[int, int, int]:
    """Rank, world size and local rank from the launcher's environment, checked."""
    missing = [name for name in _ENVIRONMENT if not os.environ.get(name)]
    if missing:
        raise AlfaError(
            f"a distributed run needs the environment variables {', '.join(_ENVIRONMENT)} "
            f"(missing: {', '.join(missing)}); launch it with torchrun, e.g. 'torchrun "
            "--nproc-per-node 2 -m alfa train CONFIG --run-dir RUN', and give several machines "
            "--rdzv-endpoint HOST:PORT"
        )
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        raw = os.environ.get(name, "0")
        try:
            values[name] = int(raw)
        except ValueError:
            raise AlfaError(f"environment variable {name} is {raw!r}, not an integer") from None
    rank, size, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if size < 1 or not 0 <= rank < size:
        raise AlfaError(f"environment variables RANK={rank} and WORLD_SIZE={size} do not fit")
    return rank, size, local


def check_gpu_per_process() -> None:
    """Refuse a ``torchrun`` job that trains on CUDA with more processes on this machine than it
    has GPUs: each process takes GPU ``LOCAL_RANK`` (:func:`process_group`), and processes that
    share one would meet again as an obscure NCCL failure. Checked when a run resolves its
    device to CUDA (``train.device``), so a CPU job on a GPU machine may have any number.

    Raises:
        ConfigError: ``LOCAL_WORLD_SIZE`` (or ``LOCAL_RANK + 1``) is above the GPU count; raised
            on every process of the machine alike when torchrun says ``LOCAL_WORLD_SIZE``.
    """
    if not launched():
        return
    try:
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return  # process_group names the variable that is not an integer
    count = torch.cuda.device_count()
    needed = _per_machine(local)
    if needed <= count:
        return
    error = ConfigError(
        f"train.device: cuda: this machine runs {needed} processes of the job (LOCAL_RANK "
        f"{local}) but has {count} GPU(s), and each process needs its own; launch at most "
        f"{count} per machine (torchrun --nproc-per-node {count}) or set train.device=cpu"
    )
    # LOCAL_WORLD_SIZE is the same on every process of the machine: they all refuse alike
    raise shared_error(error) if "LOCAL_WORLD_SIZE" in os.environ else error


@contextmanager
def process_group(timeout: float = DEFAULT_TIMEOUT) -> Iterator[World]:
    """Join the job's process group for the duration of a command, when launched by torchrun
    with more than one process (otherwise a 1-process :class:`World`, and nothing to do).

    Raises:
        AlfaError: the launcher's environment is incomplete, the timeout is not positive, or
            the rendezvous (``MASTER_ADDR:MASTER_PORT``) or backend cannot be reached.
    """
    global _timeout
    if not 0 < timeout <= MAX_TIMEOUT:  # also NaN and inf, which no clock can wait for
        raise AlfaError(
            f"--timeout must be a positive number of seconds up to {MAX_TIMEOUT:.0f} (30 days); "
            f"got {timeout}"
        )
    if not launched() or os.environ.get("WORLD_SIZE", "1") == "1":
        yield World()
        return
    rank, size, local = _environment()
    dist = _dist()
    backend = _backend(local)
    if torch.cuda.is_available() and local < torch.cuda.device_count():
        torch.cuda.set_device(local)  # "cuda" is then this process's own device
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        store, _, _ = next(dist.rendezvous("env://", timeout=timedelta(seconds=timeout)))
        # torchrun keeps its store across the restarts of a job: a prefix per attempt keeps a
        # restarted process from reading the addresses of the previous attempt's processes
        store = dist.PrefixStore(f"alfa/attempt-{restart_count()}/", store)
        dist.init_process_group(
            backend, store=store, rank=rank, world_size=size, timeout=timedelta(seconds=timeout)
        )
    except (RuntimeError, ValueError, OSError) as exc:
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AlfaError(
            f"rank {rank} of {size} cannot join the process group at {where} (backend "
            f"{backend}): {line}"
        ) from exc
    _timeout = timeout
    together = False
    try:
        yield World(rank, size)
        together = True
    except BaseException as exc:
        together = bool(getattr(exc, "every_rank", False))  # every rank stops here alike
        raise
    finally:
        _timeout = DEFAULT_TIMEOUT
        with suppress(Exception):  # a broken group cannot always be torn down cleanly
            if together:  # leave together: a process whose peers are gone may abort at exit
                dist.barrier()
            dist.destroy_process_group()


@contextmanager
def _collective(what: str, *, training: bool = False) -> Iterator[None]:
    """Turn a failed collective (a peer died, or the timeout passed) into one clear line; only a
    collective of the training loop (``training``: the run directory and its checkpoints exist)
    says how to resume."""
    try:
        yield
    except RuntimeError as exc:
        rank = world().rank
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        after = (
            "; the last checkpoint is kept, resume with 'alfa train --resume RUN_DIR' "
            "(torchrun --max-restarts does it by itself)"
            if training
            else ""
        )
        raise PeerError(
            f"rank {rank}: {what} failed: another process of the job stopped or did not answer "
            f"within {_timeout:g} s ({detail[:200]}){after}"
        ) from exc


def share(tasks: int, here: World) -> tuple[int, int]:
    """The tasks ``[start, stop)`` of a meta-batch of ``tasks`` that rank ``here`` adapts.

    Raises:
        ConfigError: the number of processes does not divide ``tasks`` (raised on every rank).
    """
    if tasks % here.size:
        raise shared_error(
            ConfigError(
                f"config key 'meta.batch_size' is {tasks}, which the {here.size} processes of "
                f"the job cannot share equally; use a multiple of {here.size} (each process "
                "adapts meta.batch_size / processes tasks) or another number of processes"
            )
        )
    part = tasks // here.size
    return here.rank * part, (here.rank + 1) * part


def on_main(fn: Callable[[], T], here: World) -> T | None:
    """Run ``fn`` on rank 0 only; the other ranks wait for it. Its result stays on rank 0 (None
    elsewhere, see :func:`broadcast`); an :class:`AlfaError` it raises is raised on every rank
    with rank 0's message (printed by rank 0 alone)."""
    if not here.distributed:
        return fn()
    outcome: list[Any] = [None]
    result: T | None = None
    failure: BaseException | None = None
    if here.main:
        try:
            result = fn()
        except AlfaError as exc:
            failure = exc
            outcome[0] = (type(exc), str(exc))
        except BaseException as exc:
            failure = exc
            outcome[0] = (PeerError, f"rank 0 failed: {type(exc).__name__}: {exc}")
    with _collective("waiting for rank 0"):
        _dist().broadcast_object_list(outcome, src=0)
    if failure is not None:
        raise shared_error(failure)
    if outcome[0] is not None:
        kind, message = outcome[0]
        try:
            error = kind(message)
        except TypeError:  # an error type with other constructor arguments
            error = AlfaError(message)
        raise shared_error(error)
    return result


def broadcast(value: T | None, here: World) -> T:
    """Rank 0's ``value`` on every rank (pickled; tensors arrive on the CPU they left from)."""
    if not here.distributed:
        return value  # type: ignore[return-value]
    box = [value]
    with _collective("receiving rank 0's state"):
        _dist().broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def gather(value: Any, here: World) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not here.distributed:
        return [value]
    out: list[Any] = [None] * here.size
    with _collective("gathering results"):
        _dist().all_gather_object(out, value)
    return out


def broadcast_parameters(module: nn.Module, here: World) -> None:
    """Give every rank rank 0's parameters and buffers (a fresh run starts identical)."""
    if not here.distributed:
        return
    with _collective("broadcasting the meta-parameters", training=True), torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            _dist().broadcast(tensor.data, src=0)


def mean_over_ranks(
    learner: nn.Module, stats: Tensor, stop: bool, here: World
) -> tuple[Tensor, bool]:
    """Average the meta-gradients in place, and ``stats``, over the ranks; whether any rank
    asked to stop. One ``all_reduce`` of one flat tensor (see the module docstring)."""
    if not here.distributed:
        return stats, stop
    grads = [p.grad for p in learner.parameters() if p.grad is not None]
    dtype = grads[0].dtype if grads else stats.dtype
    parts = [g.reshape(-1) for g in grads]
    flag = torch.ones(1, dtype=dtype, device=stats.device) * float(stop)
    flat = torch.cat([*parts, stats.to(dtype).reshape(-1), flag])
    with _collective("averaging the meta-gradients", training=True):
        _dist().all_reduce(flat)
    stopping = bool(flat[-1] > 0)
    flat = flat[:-1].div_(here.size)
    offset = 0
    with torch.no_grad():
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
    return flat[offset:].to(stats.dtype), stopping


def first_divergence(local: DivergenceError | None, here: World) -> DivergenceError:
    """The divergence of the lowest rank that saw one, as one error on every rank."""
    if not here.distributed:
        assert local is not None
        return local
    messages = gather(None if local is None else str(local), here)
    for rank, message in enumerate(messages):
        if message is not None:
            return shared_error(DivergenceError(f"{message} (seen by rank {rank})"))  # type: ignore[return-value]
    return shared_error(  # type: ignore[return-value]
        DivergenceError("non-finite outer loss or hyperparameter mean after averaging over ranks")
    )


def check_same_parameters(learner: nn.Module, iteration: int, here: World) -> None:
    """Refuse to checkpoint when the ranks' meta-parameters differ (they must step alike)."""
    if not here.distributed:
        return
    with torch.no_grad():
        values = [p.detach().double().sum() for p in learner.parameters()]
        local = torch.stack(values).cpu().tolist() if values else []
    found = gather(local, here)
    if any(other != found[0] for other in found[1:]):
        raise shared_error(
            PeerError(
                f"iteration {iteration}: the ranks' meta-parameters differ; the job is not "
                "deterministic on this hardware (no checkpoint written)"
            )
        )


def announce(message: str, here: World) -> None:
    """A console line from rank 0 only."""
    if here.main:
        print(message, file=sys.stderr, flush=True)
