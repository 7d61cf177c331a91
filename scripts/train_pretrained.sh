#!/usr/bin/env bash
# Meta-train the pretrained Omniglot models that ship in src/alfa/resources/pretrained/.
#
# For each of 20-way and 5-way 1-shot, ALFA+MAML with the recipe of
# configs/omniglot/alfa_maml_{20,5}way_1shot.yaml (4-CONV, 32 filters, 28x28, 2 inner steps,
# 600 and 1000 meta-iterations, seed 0; see results/omniglot_minimal.md):
#   1. a run on the 6/2 alphabet split (6 meta-train alphabets), tested with `alfa eval` on the
#      600 fixed episodes of the 2 held-out alphabets (Early_Aramaic, Tagalog): the accuracy the
#      README reports (written to $RUNS/omniglot-<N>way-6of8/eval.json), and with
#      `alfa eval --episodes within-alphabet` on episodes of one held-out alphabet each
#      (Lake et al.'s one-shot task; $RUNS/omniglot-<N>way-6of8/eval_within.json);
#   2. a run on all 8 alphabets (configs/omniglot/splits/minimal_all.txt), same recipe and seed,
#      exported with `alfa export` as the shipped model src/alfa/resources/pretrained/
#      omniglot-<N>way.safetensors.
# Runs go to $RUNS (default runs/pretrained); a finished run (marked TRAINED) is not trained
# again. The commit, each command and its CPU time are appended to $RUNS/PROVENANCE.txt.
#
#   ALFA_DATA=/path/to/data bash scripts/train_pretrained.sh
#
# $ALFA_DATA/omniglot holds images_background_small1.zip and images_background_small2.zip
# (default ALFA_DATA: ../shared/data beside the repository). The runs and the exported files
# store the data path as ${ALFA_DATA}/omniglot/..., not as a path of this machine.
# WAYS="5" by default: the shipped omniglot-20way now comes from the Omniglot protocol
# (scripts/pretrained_omniglot.py); WAYS="20 5" trains this recipe's earlier 20-way model too
# (give OUT another folder to keep the shipped file). ALFA is the command that runs the CLI
# (default: `alfa`). OUT is where the exported files go (default src/alfa/resources/pretrained:
# the shipped files are replaced; another folder leaves them as they are). One thread per run
# (OMP_NUM_THREADS=1, train.threads=1) on the CPU, with the separate 4-CONV layers the shipped
# models were trained with (train.kernels=unfused; the fused blocks of the default, auto, round
# differently, and only where a C++ compiler is present): a rerun gives the same weights bit
# for bit on the same machine and software.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
export ALFA_DATA=${ALFA_DATA:-../shared/data}
RUNS=${RUNS:-runs/pretrained}
WAYS=${WAYS:-5}
read -r -a ALFA <<< "${ALFA:-alfa}"
OUT=${OUT:-src/alfa/resources/pretrained}
SPLITS=configs/omniglot/splits
# shellcheck disable=SC2016  # the variable is stored as written, expanded when the data is read
ROOT='${ALFA_DATA}/omniglot/images_background_small1.zip,${ALFA_DATA}/omniglot/images_background_small2.zip'
for zip in "$ALFA_DATA"/omniglot/images_background_small{1,2}.zip; do
  [[ -f $zip ]] || { echo "missing $zip (set ALFA_DATA)" >&2; exit 2; }
done
mkdir -p "$RUNS" "$OUT"
log="$RUNS/PROVENANCE.txt"
{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  git status --porcelain --untracked-files=no 2>/dev/null | sed 's/^/# modified: /' || true
} >> "$log"
TIMEFORMAT="# cpu: user %U s, sys %S s, wall %R s"

iterations() { if [[ $1 == 20 ]]; then echo 600; else echo 1000; fi; }

run() {  # log a command, run it, log its CPU time
  echo "$*" >> "$log"
  { time "$@" 2>&3 ; } 3>&2 2>> "$log"
}

train() {  # train RUN_DIR CONFIG OVERRIDES...: a fresh run unless it is marked TRAINED
  local dir=$1
  shift
  [[ -f $dir/TRAINED ]] && return 0
  rm -rf "$dir"
  run "${ALFA[@]}" train "$1" --run-dir "$dir" --no-progress "${@:2}"
  touch "$dir/TRAINED"
}

for ways in $WAYS; do
  config=configs/omniglot/alfa_maml_${ways}way_1shot.yaml
  common=("data.root=$ROOT" "train.iterations=$(iterations "$ways")" train.threads=1 seed=0
    train.kernels=unfused "data.test_split_file=$SPLITS/minimal_test.txt")
  split_run=$RUNS/omniglot-${ways}way-6of8
  all_run=$RUNS/omniglot-${ways}way-all8
  train "$split_run" "$config" "${common[@]}" "data.split_file=$SPLITS/minimal_train.txt"
  train "$all_run" "$config" "${common[@]}" "data.split_file=$SPLITS/minimal_all.txt"
  run "${ALFA[@]}" eval "$split_run" --checkpoint last --json > "$split_run/eval.txt"
  tail -n 1 "$split_run/eval.txt" > "$split_run/eval.json"
  head -n 1 "$split_run/eval.txt" | tee -a "$log"
  run "${ALFA[@]}" eval "$split_run" --checkpoint last --episodes within-alphabet --json \
    > "$split_run/eval_within.txt"
  tail -n 1 "$split_run/eval_within.txt" > "$split_run/eval_within.json"
  sed '$d' "$split_run/eval_within.txt" | tee -a "$log"  # the report's lines, not its JSON
  run "${ALFA[@]}" export "$all_run" --checkpoint last --to "$OUT/omniglot-${ways}way.safetensors" \
    | tee -a "$log"
done
