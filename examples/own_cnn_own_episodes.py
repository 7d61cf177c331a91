"""Your own CNN on your own episodes: a torch Dataset of (image, label) -> ALFA few-shot training.

    python examples/own_cnn_own_episodes.py --iterations 200

The dataset here is synthetic (every class is one random 12x12 pattern, each image of it a noisy
copy) so that the script needs no download; put any ``torch.utils.data.Dataset`` of
``(image, label)`` pairs in its place (``alfa.FewShotEpisodes.from_folder`` reads a
class-per-folder tree instead). The CNN uses PyTorch's own ``nn.BatchNorm2d``: the learner turns
it into per-task batch normalisation and keeps the closed-form fast engine.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import alfa
from alfa.runs.evaluate import evaluate


class NoisyPatterns(torch.utils.data.Dataset):
    """``classes`` random patterns, ``per_class`` noisy grey images of each: (image, label)."""

    def __init__(self, classes: int, per_class: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.patterns = torch.rand(classes, 1, 12, 12, generator=g)
        self.noise = 0.15 * torch.randn(classes * per_class, 1, 12, 12, generator=g)
        self.per_class = per_class

    def __len__(self) -> int:
        return len(self.noise)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = index // self.per_class
        return (self.patterns[label] + self.noise[index]).clamp(0, 1), label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--test-tasks", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)

    episodes = alfa.FewShotEpisodes.from_dataset(
        NoisyPatterns(classes=20, per_class=6, seed=1),  # training classes
        test=NoisyPatterns(classes=10, per_class=6, seed=2),  # unseen classes
        ways=5,
        shots=1,
        query=5,
        meta_batch=4,
        seed=0,
    )
    cnn = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 3 * 3, 5),
    )
    learner = alfa.MetaLearner(cnn, rule="alfa", steps=2, task="classification", lr=0.1)
    optimiser = torch.optim.Adam(learner.parameters(), lr=1e-3)

    def test() -> float:
        return evaluate(learner, episodes, tasks=args.test_tasks, seed=1234, batch=50)["mean"]

    before = test()
    for _, batch in zip(range(args.iterations), episodes, strict=False):
        optimiser.zero_grad()
        learner(batch).loss.backward()
        optimiser.step()
    after = test()
    print(f"engine: {learner.engine}")
    print(
        f"test accuracy on {args.test_tasks} 5-way 1-shot tasks of unseen classes: "
        f"{before:.3f} before, {after:.3f} after {args.iterations} iterations"
    )


if __name__ == "__main__":
    main()
