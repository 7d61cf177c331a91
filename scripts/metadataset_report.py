"""The Markdown page of results/metadataset_omniglot_minimal.json (written by
scripts/metadataset_omniglot_minimal.py): every number on it comes from the JSON document."""

from __future__ import annotations

SETTING = """\
Table 3 of the paper runs fo-MAML and fo-Proto-MAML, with and without ALFA, on Meta-Dataset
(ILSVRC training, ten test sources). No Meta-Dataset source is available here; this is the same
pipeline end to end on real data that fits a CPU: the two official minimal Omniglot background
sets converted into Meta-Dataset's on-disk format (one TFRecord file of `tf.train.Example`s per
character, a bi-level `dataset_spec.json` with the alphabets as superclasses), read back without
TensorFlow, with Meta-Dataset's variable-way variable-shot episodes drawn inside one alphabet.
See docs/metadataset.md for what each part does.

## Setting

- Data: `images_background_small1/2` (Greek and Latin appear in both and are merged):
  242 characters of 20 drawings. Training: the 6 alphabets of `configs/omniglot/splits`
  (203 characters); test: Early_Aramaic and Tagalog (39 characters); no validation alphabet.
  No rotations (Meta-Dataset has none). Images stored as Meta-Dataset's converter stores
  Omniglot (RGB, inverted to white strokes on black, JPEG of quality 75) and decoded as its
  decoder does (bilinear resize to 28x28 with aligned corners in float32, scaled to [-1, 1]).
- Episodes (Meta-Dataset's sampler, alphabet-aware): ways uniform in [5, min(50, alphabet
  size)], 10 query images per class (half the smallest class, at most 10), support budget and
  imbalanced shots as in the Meta-Dataset paper.
- Learner (`{config}`):
  4-CONV with 32 filters, head of 50 outputs (Meta-Dataset's `logit_dim`), 3 inner steps, first
  order, inner lr 0.05 (ALFA's alpha0 starts there), Adam 1e-3, meta-batch 1, seed 0; the test
  inner loop has 3 steps too. fo-Proto-MAML sets each episode's head from the support
  prototypes (`meta.head_init=proto`); fo-MAML uses the first N rows of the meta-learned head
  (`meta.head_init=learned`). ALFA: the default generator (two layers, unit initialisation), no
  meta-gradient clipping.
- This is a small CPU budget (the Meta-Dataset runs train for tens of thousands of episodes on
  larger images and networks), so the numbers say how the pieces behave here, not what Table 3
  would give. (In the paper's Table 3, ALFA helps fo-Proto-MAML on 8 of 10 sources but not on
  Omniglot, 61.87 against 63.37, nor on VGG Flower.)"""


def _provenance(doc: dict) -> list[str]:
    source, runs = doc["source"], doc["runs_source"]
    modified = source.get("modified_src")
    lines = [
        f"Written by `{doc['command']}` at commit `{source['commit']}`"
        + (f" (source files modified from it: {', '.join(modified)})" if modified else "")
        + "."
    ]
    if runs.get("collected"):
        lines += [
            "It collects runs that the code at commit",
            f"`{runs['commit']}` trained and tested (the commands below, one thread",
            "each); it trained nothing itself.",
            *([runs["note"]] if runs.get("note") else []),
        ]
    else:
        lines += ["It converted the data and trained and tested the runs itself (one thread)."]
    return lines


def markdown(doc: dict) -> str:
    """The page: setting, accuracy table, paired table and the commands, from ``doc``."""
    runs, pairs = doc["runs"], doc["paired"]
    first = next(iter(runs.values()))
    episodes = first["episodes"]
    lines = [
        "# Omniglot (minimal sets) in Meta-Dataset's record format: fo-MAML, fo-Proto-MAML, +ALFA",
        "",
        *_provenance(doc),
        "",
        SETTING.format(config=doc["config"]),
        f"- Training: {first['iterations']} meta-iterations per run, one seed. Test: "
        f"{episodes} fixed episodes (seed 1234)",
        f"  of {first['ways_min']} to {first['ways_max']} ways ({first['ways_mean']:.2f} on "
        f"average) and {first['support_mean']:.2f} support images on average.",
        "",
        "## Results",
        "",
        f"Test accuracy over the {episodes} fixed episodes (mean of per-episode accuracy, 95% CI",
        "over episodes). Train time is wall clock on 2 CPU cores shared with other work, so it",
        "does not compare the methods.",
        "",
        "| method | accuracy (%) | 95% CI | train time | final train loss |",
        "|---|---|---|---|---|",
    ]
    for r in runs.values():
        lines.append(
            f"| {r['label']} | {r['accuracy']:.2f} | {r['ci95']:.2f} | {r['train_seconds']:.0f} s "
            f"| {r['final_train_loss']:.3f} |"
        )
    lines += [
        "",
        "Paired on the same episodes (ALFA's accuracy minus the same method's without ALFA):",
        "",
        f"| comparison (same {episodes} episodes) | mean difference (points) | 95% CI "
        "| ALFA higher in |",
        "|---|---|---|---|",
    ]
    for p in pairs.values():
        lines.append(
            f"| {runs[p['alfa']]['label']} - {runs[p['base']]['label']} | {p['mean']:+.2f} "
            f"| {p['ci95']:.2f} | {p['alfa_better']} of {p['episodes']} |"
        )
    lines += [""]
    for p in pairs.values():
        excludes = abs(p["mean"]) > p["ci95"]
        lines.append(
            f"- {runs[p['alfa']]['label']} is {abs(p['mean']):.2f} points "
            f"{'above' if p['mean'] > 0 else 'below'} {runs[p['base']]['label']}; the paired "
            f"95% CI {'excludes' if excludes else 'includes'} zero."
        )
    lines += ["", "## Commands", "", "From the repository root, one thread each:", "", "```"]
    if doc.get("conversion"):
        lines.append(doc["conversion"])
    lines += [r["command"] for r in runs.values()]
    lines += [
        "```",
        "",
        "`results/metadataset_omniglot_minimal.json` holds every run's result (with the",
        f"{episodes} per-episode accuracies) and the paired differences.",
    ]
    return "\n".join(lines) + "\n"
