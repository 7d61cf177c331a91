"""The run configuration's schema: one frozen dataclass per section of a run.

The trailing ``# comment`` of each field is its documented meaning: :mod:`alfa.config.docs` reads
it for ``alfa config keys`` and ``docs/config.md`` (regenerate with ``python -m alfa.config.docs``).
Loading, overrides and validation are in :mod:`alfa.config`, which re-exports these classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DEFAULT_GENERATOR",
    "DEFAULT_RULE",
    "GENERATOR_PRESETS",
    "Config",
    "DataConfig",
    "EvalConfig",
    "MetaConfig",
    "ModelConfig",
    "RuleConfig",
    "TrainConfig",
]


DEFAULT_RULE = "maml"
"""The update rule when none is named, in a config (``rule.name``) and in Python
(``MetaLearner(model)``): MAML's fixed-learning-rate SGD (Eq. 1), the baseline every other rule
is compared with and the one without meta-learned hyperparameters. ALFA is named when it is
wanted (``rule.name: alfa``, ``rule="alfa"``). A config that names no rule has always trained
MAML, so every existing config keeps its meaning."""


DEFAULT_GENERATOR = "paper"
"""The generator preset of an ALFA config that names neither ``rule.generator`` nor the switch
it sets: the paper's generator. The Omniglot protocol (``results/omniglot_protocol.md``) kept
it: on images the stable switches were worse on validation in 2 of 3 seeds and neither
generator diverged (docs/stability.md). The shipped configs name their preset
(:mod:`alfa.config.writer`), so they do not change with it."""

GeneratorPreset = Literal["paper", "stable", "custom"]
"""``rule.generator``: a name of :data:`GENERATOR_PRESETS`, or ``custom`` (another mix)."""

GENERATOR_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"state_statistics": ("mean",), "state_encoding": "raw", "generator_output": "linear"},
    "stable": {
        "state_statistics": ("mean", "rms"),
        "state_encoding": "log_sign",
        "generator_output": "bounded",
    },
}
"""What ``rule.generator`` names: the values of ALFA's three generator switches. ``paper`` is
g_phi as published (Eq. 5 on the layer-wise means, raw, unbounded outputs); ``stable`` reads
means and RMS, log-sign encoded, and bounds the multipliers to (0, 2), the switches that never
diverged in the controlled Table 8 (docs/stability.md). A switch set beside the preset wins
over the preset's value (a preset given as an override wins over the file's switches), and a
loaded config names the preset its switches match, or ``custom``."""


@dataclass(frozen=True)
class DataConfig:
    """Where tasks come from: ``sinusoid`` regression or an image dataset (episodes)."""

    name: str = "sinusoid"  # sinusoid | omniglot | mini_imagenet | tiered_imagenet | cub | folder
    shots: int = 5  # K support examples per class (per task for regression)
    query: int = 0  # query examples per class (regression: 0 means "same as shots")
    # Regression (Table 8)
    family: Literal["paper", "maml"] = "paper"  # paper: random frequency too; maml: frequency 1
    eval_query: int = 100  # query points per test task (Table 8: "100 sampled points")
    # Classification
    ways: int = 5  # N classes per episode (N-way)
    root: str = ""  # dataset path (folder, zip, or several separated by ',')
    format: str = ""  # dataset format (see `alfa data check`); empty: detect
    image_size: int = 84  # images are resized to image_size x image_size pixels
    rotations: bool = False  # Omniglot: rotations by 90 degrees as extra classes
    # random affine jitter of each training image (alfa.data.augment); 0: none
    jitter_degrees: float = 0.0  # training images turned by U(-d, d) degrees; 0: not turned
    jitter_shift: float = 0.0  # training images moved by U(-f, f) of the side on each axis
    jitter_scale: float = 0.0  # training images zoomed by U(1 - z, 1 + z); 0: not zoomed
    split_file: str = ""  # optional class-list file of the meta-training classes
    test_split_file: str = ""  # optional class-list file of the meta-test classes
    val_split_file: str = ""  # optional class-list file of the validation classes
    train_classes: Literal["split", "all"] = "split"  # split: the training split; all: every class
    workers: int = -1  # decoding worker processes; -1: automatic (4 on a GPU, none on the CPU)
    test_query: int = 0  # query images per class of validation/test episodes; 0: as `query`
    test_name: str = ""  # cross-domain: dataset of the test episodes (e.g. cub); "": as `name`
    test_root: str = ""  # cross-domain: its path
    test_format: str = ""  # cross-domain: its format (empty: detect)


@dataclass(frozen=True)
class ModelConfig:
    """The base learner f_theta."""

    name: str = "mlp"  # base learner: mlp | conv4 | resnet12 | resnet18 (Meta-Dataset's)
    hidden: tuple[int, ...] = (40, 40)  # mlp: widths of the hidden layers
    filters: int = 48  # conv4: filters (channels) of every block
    norm: Literal["transductive", "support"] = "transductive"  # BatchNorm mode (reference A.1)


@dataclass(frozen=True)
class RuleConfig:
    """The inner-loop update rule and its switches (paper Sec. 3, Tables 5 and 6)."""

    name: Literal["maml", "learned_fixed", "alfa"] = DEFAULT_RULE  # update rule (see the README)
    lr: float = 0.01  # inner learning rate alpha (MAML) and initial post-multiplier alpha0
    weight_decay: float = 0.0005  # lambda; beta0 starts at lr * weight_decay (reference A.2)
    # ALFA generator g_phi
    generator_input: Literal["both", "weights", "gradients"] = "both"  # what g_phi reads (Table 5)
    generator: GeneratorPreset = "paper"  # paper | stable: sets the next 3 keys (stability.md)
    state_statistics: tuple[str, ...] = ("mean",)  # [mean] (paper) or [mean, rms] (adaptivity.md)
    generate: tuple[str, ...] = ("alpha", "beta")  # which hyperparameters g_phi generates (Table 6)
    generator_layers: Literal[2, 3] = 2  # layers of g_phi; 2: official code; 3: paper text
    generator_init: Literal["unit", "official"] = "unit"  # g_phi initialisation (docs/stability.md)
    clip: tuple[float, ...] = ()  # [] or [low, high]: clamp generated multipliers
    state_encoding: Literal["raw", "log_sign"] = "raw"  # how g_phi reads the state (adaptivity.md)
    generator_output: Literal["linear", "bounded"] = "linear"  # bounded: 2*sigmoid, in (0, 2)
    detach_gradient_state: bool = True  # official: no meta-gradient through gradient means
    # post-multipliers alpha0/beta0 (and the learned_fixed rule's hyperparameters)
    per_step: bool = True  # a different alpha0/beta0 per inner step (else one for all steps)
    per_layer: bool = True  # a different alpha0/beta0 per layer (else one for all layers)
    learn_alpha: bool = True  # meta-learn alpha0 (else it stays at rule.lr)
    learn_beta: bool = True  # meta-learn beta0 (else it stays at rule.lr * rule.weight_decay)
    per_element_decay: bool = False  # meta-learned per-element decay (official random init)
    l2f: bool = False  # task-conditioned attenuation of the initialisation (L2F)


@dataclass(frozen=True)
class MetaConfig:
    """The outer loop (paper Eq. 2 and Eq. 6)."""

    init: Literal["learned", "random"] = "learned"  # MAML init or a fixed seeded random init
    steps: int = 5  # S inner steps
    first_order: bool = False  # drop the second-order terms of the meta-gradient
    # outer loss over the query losses after each step (src/alfa/engine/multi_step.py)
    multi_step_loss: Literal[False, True, "annealed"] = False  # false: last; true: mean; annealed
    multi_step_epochs: int = 15  # annealed: epochs until the last step alone counts
    epoch_iterations: int = 500  # annealed: meta-iterations per epoch (official 500)
    batch_size: int = 25  # tasks per meta-batch
    lr: float = 0.001  # outer (meta) learning rate of Adam
    grad_clip: float = 0.0  # 0: off; else max global norm of the outer gradient
    head_init: Literal["learned", "zero", "proto"] = "learned"  # task head: proto = Proto-MAML


@dataclass(frozen=True)
class TrainConfig:
    """The training loop: length, logging, validation, checkpoints and threads."""

    iterations: int = 10000  # meta-iterations (outer updates) of the run
    log_every: int = 100  # iterations between lines of metrics.jsonl and TensorBoard points
    val_every: int = 1000  # iterations between validations; 0: no validation
    val_tasks: int = 200  # validation tasks per validation
    checkpoint_every: int = 1000  # iterations between periodic checkpoints
    keep_last: int = 2  # checkpoints kept besides the best one
    keep_best: int = 1  # best-by-validation checkpoints kept (top-k, for `alfa eval --ensemble`)
    threads: int = 0  # torch CPU threads; 0: automatic (docs/engine.md, Threads)
    device: str = "auto"  # auto | cpu | cuda (auto: cuda when present)
    engine: Literal["auto", "fast", "generic"] = "auto"  # inner-loop engine (alfa.engine.fast)
    task_group: int = 0  # fast path: tasks per group; 0: automatic (1 for convs on the CPU)
    tf32: bool = False  # CUDA: TensorFloat-32 matrix products and convolutions
    recompute: bool = False  # rebuild each inner step during the meta-backward (less memory)
    compile: bool = False  # torch.compile the training meta-iteration (fast path; docs/engine.md)
    cuda_graph: bool = False  # CUDA: compile and replay the meta-iteration as CUDA graphs
    channels_last: bool = False  # convolution inputs in channels-last (NHWC) layout (fast path)
    kernels: Literal["auto", "compiled", "eager", "unfused"] = "auto"  # fused 4-CONV blocks
    reuse_memory: bool = True  # CPU: keep freed tensor memory for reuse (no page faults)
    autocast: Literal["none", "bf16"] = "none"  # bf16: matmuls/convs in bfloat16, weights float32


@dataclass(frozen=True)
class EvalConfig:
    """The evaluation protocol (fixed seeded test tasks)."""

    tasks: int = 600  # test tasks of `alfa eval` (its --tasks overrides)
    steps: int = 0  # inner steps of evaluation; 0: as trained (meta.steps)
    seed: int = 1234  # seed of the fixed test tasks (independent of the training seed)
    batch: int = 100  # tasks per vectorised evaluation batch
    first_order: bool = True  # evaluation inner loops are first order (reference A.3)


@dataclass(frozen=True)
class Config:
    """A whole run: seed, name and one section per part of the method."""

    seed: int = 0  # seed of the initialisation and of the training tasks
    name: str = ""  # run name: default run directory runs/<name> ("": the config file's stem)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rule: RuleConfig = field(default_factory=RuleConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def replace(self, **changes: Any) -> Config:
        """A copy with some top-level fields changed (not re-validated)."""
        return dataclasses.replace(self, **changes)
