"""Throughput benchmarks, each against a reference run in the same process.

``--workload sinusoid``: meta-training iterations per second of alfa's engine (one vmapped
forward and one gradient call per inner step for the whole meta-batch) against a reference that
follows the official ALFA code's approach: a Python loop over the tasks of the meta-batch, and per
inner step one ``torch.autograd.grad`` call for the generator's input and one with
``create_graph=True`` for the update. Same configuration for both: 40-40 MLP, meta-batch 25,
K=10 support and 10 query points, 5 inner steps, ALFA, second order, Adam 1e-3.

``--workload episodes``: episodes per second of the image episode sampler on synthetic
in-memory Omniglot-sized data.

The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from alfa.config import RuleConfig
from alfa.functional import FunctionalModel
from alfa.meta_learner import MetaLearner
from alfa.models.mlp import MLP
from alfa.rules import build_rule
from alfa.tasks import SinusoidTasks

TASKS, SHOTS, STEPS = 25, 10, 5


class ReferenceALFA(nn.Module):
    """The official code's scheme: per task, per step, two gradient calls on plain tensors."""

    def __init__(self, net: nn.Module, steps: int) -> None:
        super().__init__()
        self.net = net
        n = len(list(net.parameters()))
        self.generator = nn.Sequential(nn.Linear(2 * n, 2 * n), nn.ReLU(), nn.Linear(2 * n, 2 * n))
        with torch.no_grad():
            self.generator[-1].weight.zero_()
            self.generator[-1].bias.fill_(1.0)
        self.alpha0 = nn.Parameter(torch.full((steps, n), 0.01))
        self.beta0 = nn.Parameter(torch.full((steps, n), 5e-6))
        self.steps = steps

    def forward_with(self, weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        names = [n for n, _ in self.net.named_parameters()]
        return torch.func.functional_call(self.net, dict(zip(names, weights, strict=True)), (x,))

    def task_loss(self, sx, sy, qx, qy) -> torch.Tensor:
        weights = list(self.net.parameters())
        n = len(weights)
        for step in range(self.steps):
            loss = (self.forward_with(weights, sx) - sy).pow(2).mean()
            plain = torch.autograd.grad(loss, weights, retain_graph=True)
            state = torch.cat(
                [torch.stack([w.mean() for w in weights]), torch.stack([g.mean() for g in plain])]
            )
            out = self.generator(state)
            alpha, beta = out[:n] * self.alpha0[step], out[n:] * self.beta0[step]
            grads = torch.autograd.grad(loss, weights, create_graph=True)
            weights = [
                (1 - beta[k]) * w - alpha[k] * g
                for k, (w, g) in enumerate(zip(weights, grads, strict=True))
            ]
        return (self.forward_with(weights, qx) - qy).pow(2).mean()

    def meta_loss(self, batch) -> torch.Tensor:
        losses = [self.task_loss(*(t[i] for t in batch)) for i in range(batch.num_tasks)]
        return torch.stack(losses).mean()


def _time(step, seconds: float) -> float:
    step()  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        step()
        count += 1
    return count / (time.perf_counter() - start)


def bench_sinusoid(seconds: float) -> dict:
    torch.manual_seed(0)
    tasks = SinusoidTasks("paper", SHOTS, SHOTS, seed=0)
    batch = tasks.sample(TASKS)

    model = MLP((40, 40))
    functional = FunctionalModel(model)
    shapes = [p.shape for p in functional.initial().values()]
    rule = build_rule(RuleConfig(name="alfa"), functional.names, shapes, STEPS)
    ours = MetaLearner(model, rule, steps=STEPS)
    opt = torch.optim.Adam(ours.parameters(), 1e-3)

    def ours_step() -> None:
        opt.zero_grad()
        ours(batch).loss.backward()
        opt.step()

    reference = ReferenceALFA(MLP((40, 40)), STEPS)
    ref_opt = torch.optim.Adam(reference.parameters(), 1e-3)

    def reference_step() -> None:
        ref_opt.zero_grad()
        reference.meta_loss(batch).backward()
        ref_opt.step()

    # Same numbers from both before timing: the two implementations compute the same loss.
    reference.net.load_state_dict(model.state_dict())
    same = torch.allclose(reference.meta_loss(batch), ours(batch).loss, rtol=1e-4, atol=1e-6)
    ours_rate = _time(ours_step, seconds)
    ref_rate = _time(reference_step, seconds)
    return {
        "workload": "sinusoid",
        "config": f"mlp 40-40, meta-batch {TASKS}, K={SHOTS}, {STEPS} steps, alfa, second order",
        "threads": torch.get_num_threads(),
        "ours_per_s": ours_rate,
        "reference_per_s": ref_rate,
        "speedup": ours_rate / ref_rate,
        "same_loss": bool(same),
    }


def bench_episodes(seconds: float) -> dict:
    """Episodes per second from an in-memory Omniglot-sized dataset (uint8, 28x28, 1 channel).

    The reference is the cost of only copying the same number of images out of memory, so the
    ratio says how much the sampler adds on top of the unavoidable gather.
    """
    from alfa.data import TensorImageDataset, benchmark_episodes

    g = torch.Generator().manual_seed(0)
    classes, per_class = 200, 20
    images = torch.randint(0, 256, (classes * per_class, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    dataset = TensorImageDataset([f"c{i}" for i in range(classes)], images, labels)
    ways, shots, query, meta_batch = 5, 1, 15, 32
    result = benchmark_episodes(dataset, ways, shots, query, meta_batch, seconds)
    per_episode = ways * (shots + query)

    def gather() -> None:
        index = torch.randint(0, images.shape[0], (meta_batch * per_episode,), generator=g)
        images[index].float().div_(255)

    reference = _time(gather, seconds) * meta_batch
    return {
        "workload": "episodes",
        "config": f"{ways}-way {shots}-shot {query}-query, meta-batch {meta_batch}, 28x28x1",
        "threads": torch.get_num_threads(),
        "ours_per_s": result["episodes_per_second"],
        "reference_per_s": reference,
        "ratio_to_plain_gather": result["episodes_per_second"] / reference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["sinusoid", "episodes"], default="sinusoid")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = (
        bench_sinusoid(args.seconds)
        if args.workload == "sinusoid"
        else bench_episodes(args.seconds)
    )
    if not args.json:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
