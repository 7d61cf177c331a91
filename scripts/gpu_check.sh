#!/usr/bin/env bash
# The GPU check: a budgeted plan for a short loan of one GPU (about 15 minutes of machine time,
# one prepared script). Steps run in order of what they tell, each under its own time limit
# (`timeout`), and a step starts only when its limit fits in what is left of the budget
# (default 210 s: 3.5 minutes by the script's own clock). Every step, run, failed, timed out or
# skipped, appends one JSON line to benchmarks/results/gpu-<date>.jsonl as it ends (a killed
# check keeps every finished step), and the full output, pytest's included, goes to
# benchmarks/results/gpu-<date>.log. With $OUT set (the device machine), both are written
# there too. The time of each step and the total are printed as the plan goes.
#
# Order: the CUDA tests that do not compile; mini-conv4 and Omniglot eager against the reference
# at meta-batch 2 and 8; mini-conv4 at meta-batch 8 compiled (ours only: its reference is the
# eager row's, not timed again); memory (ResNet12, meta-batch 2); then the rest (the compiling
# tests, more compiled rows, one task per group, channels-last, bf16, CUDA graphs, TF32 on).
# The benchmarks run with the CUDA flags of `alfa train` (TF32 off unless asked, cuDNN's
# autotuner on: alfa.runs.build.cuda_settings).
#
# Usage: bash scripts/gpu_check.sh [--dry-run] [--results DIR] [--budget SECONDS]
#   --dry-run  on the CPU, the plan end to end in seconds: every step is accounted for, and the
#              first step of each kind runs for real in a CPU form (the environment, the GPU
#              tests, which skip there, a sinusoid row against the reference and an ours-only
#              row that reuses it); the others are listed with their commands ("planned").
#              Results go to $TMPDIR/alfa-gpu-check unless --results says otherwise. The
#              limits and the budget stretch by 4 there (the CPU starts Python and torch slower
#              than the GPU machine does); the lines keep the plan's own numbers.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
BUDGET=210
RESULTS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --results) RESULTS=${2:?--results needs a folder}; shift ;;
    --budget) BUDGET=${2:?--budget needs seconds}; shift ;;
    *) echo "gpu_check.sh: error: unknown argument '$1' (see the header of the script)" >&2; exit 2 ;;
  esac
  shift
done
if ! [[ "$BUDGET" =~ ^[0-9]+$ ]]; then
  echo "gpu_check.sh: error: --budget must be a whole number of seconds, got '$BUDGET'" >&2
  exit 2
fi

PY=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
export PY
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

day=$(date -u +%Y%m%d)
if [ "$DRY" = 1 ]; then
  RESULTS=${RESULTS:-${TMPDIR:-/tmp}/alfa-gpu-check}
  name="gpu-dryrun-$day"
  DEVICE=cpu
  SLACK=4
else
  RESULTS=${RESULTS:-benchmarks/results}
  name="gpu-$day"
  DEVICE=cuda
  SLACK=1
fi
mkdir -p "$RESULTS"
jsonl="$RESULTS/$name.jsonl"
log="$RESULTS/$name.log"
copy=""  # the device machine: the same files under $OUT, kept up to date after every step
if [ -n "${OUT:-}" ] && [ "$DRY" = 0 ]; then
  mkdir -p "$OUT" && copy="$OUT"
fi

say() {
  echo "$*" >>"$log"
  echo "$*"
}

# record STEP KIND STATUS RC LIMIT SECONDS COMMAND OUTPUT: one JSON line, appended at once
record() {
  local line
  line=$("$PY" - "$@" "$SECONDS" "$BUDGET" "$DRY" <<'PYEOF'
import json, sys
step, kind, status, rc, limit, seconds, command, output, total, budget, dry = sys.argv[1:12]
line = {
    "step": step, "kind": kind, "status": status,
    "rc": int(rc) if rc.lstrip("-").isdigit() else None,
    "limit_s": int(limit), "seconds": int(seconds), "total_s": int(total),
    "budget_s": int(budget), "dry_run": dry == "1", "command": command,
}
last = output.strip().splitlines()[-1] if output.strip() else ""
if kind in ("bench", "ours"):
    try:
        line["result"] = json.loads(last)
    except ValueError:
        line["result"] = None
elif last:
    line["summary"] = last
print(json.dumps(line))
PYEOF
)
  echo "$line" >>"$jsonl"
  if [ -n "$copy" ]; then cp "$jsonl" "$log" "$copy/"; fi
}

declare -A ran_kind=()

# step NAME LIMIT KIND COMMAND...: run COMMAND under `timeout LIMIT` when it fits the budget
step() {
  local name=$1 limit=$2 kind=$3
  shift 3
  local command="$*"
  if [ "$DRY" = 1 ] && [ -n "${ran_kind[$kind]:-}" ]; then
    record "$name" "$kind" planned "" "$limit" 0 "$command" ""
    say "== $name: planned (limit ${limit} s): $command"
    return
  fi
  if (( SECONDS + limit * SLACK > BUDGET * SLACK )); then
    record "$name" "$kind" "skipped: budget" "" "$limit" 0 "$command" ""
    say "== $name: skipped, ${limit} s do not fit in the $((BUDGET - SECONDS)) s left"
    return
  fi
  ran_kind[$kind]=1
  say "== $name (limit ${limit} s, at ${SECONDS} s of ${BUDGET} s): $command"
  local began=$SECONDS output rc status
  output=$(timeout --kill-after=5 $((limit * SLACK)) bash -c '"$@"' run "$@" 2>>"$log" | tee -a "$log")
  rc=${PIPESTATUS[0]}
  case $rc in
    0) status=ok ;;
    124 | 137) status="timed out" ;;
    *) status=failed ;;
  esac
  record "$name" "$kind" "$status" "$rc" "$limit" $((SECONDS - began)) "$command" "$output"
  say "== $name: $status (exit $rc) in $((SECONDS - began)) s; ${SECONDS} s of ${BUDGET} s used"
}

environment() {
  "$PY" - <<'PYEOF'
import json, platform, torch
from alfa.runs.build import cuda_settings
info = {"python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "gpus": torch.cuda.device_count()}
if torch.cuda.is_available():
    info["gpu"] = torch.cuda.get_device_name(0)
    info["memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    info["cudnn"] = torch.backends.cudnn.version()
cuda_settings(tf32=False, fixed_shapes=True)  # what alfa train sets by default
info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
info["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
print(json.dumps(info))
PYEOF
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2
  fi
}

tests() {  # pytest marker expression; every test at most 60 s, the output kept in the log
  local timeout=()
  if "$PY" -c "import pytest_timeout" 2>/dev/null; then timeout=(--timeout 60); fi
  "$PY" -m pytest -q -rs -m "$1" "${timeout[@]}" tests/test_gpu.py tests/test_gpu_training.py \
    tests/test_execution.py 2>&1
}

# bench NAME LIMIT ARGS...: ours and the reference, each side at most half the limit
bench() {
  local name=$1 limit=$2
  shift 2
  local side=$(((limit - 4) * SLACK / 2))
  if [ "$DRY" = 1 ]; then set -- --workload sinusoid --tasks 2; fi
  step "$name" "$limit" bench "$PY" benchmarks/speed.py --json --device "$DEVICE" \
    --seconds "$SECS" --min-iters "$ITERS" --side-timeout "$side" "$@"
}

# ours NAME LIMIT ARGS...: ours only, the reference taken from an earlier row of this check
ours() {
  local name=$1 limit=$2
  shift 2
  if [ "$DRY" = 1 ]; then set -- --workload sinusoid --tasks 2; fi
  step "$name" "$limit" ours "$PY" benchmarks/speed.py --json --device "$DEVICE" \
    --seconds "$SECS" --min-iters "$ITERS" --side-timeout $(((limit - 4) * SLACK)) \
    --reference-from "$jsonl" "$@"
}

if [ "$DRY" = 1 ]; then SECS=0; ITERS=1; else SECS=1; ITERS=3; fi
export -f environment tests
say "== GPU check $name: budget ${BUDGET} s, results in $jsonl"

# -- the most informative first (the limits of this block add up to 210 s)
step environment 5 environment environment
step cuda-tests 40 tests tests "gpu and not slow"
bench mini-conv4-mb2 20 --workload mini-conv4 --tasks 2
bench mini-conv4-mb8 25 --workload mini-conv4 --tasks 8
bench omniglot-mb2 20 --workload omniglot --tasks 2
bench omniglot-mb8 20 --workload omniglot --tasks 8
ours mini-conv4-mb8-compile 60 --workload mini-conv4 --tasks 8 --compile
bench mini-resnet12-mb2-memory 20 --workload mini-resnet12 --tasks 2
# -- the rest, as long as the budget lasts (earlier steps that end early leave room)
ours omniglot-mb8-compile 45 --workload omniglot --tasks 8 --compile
step cuda-tests-compiled 90 tests tests "gpu and slow"
ours mini-conv4-mb8-one-task-per-group 15 --workload mini-conv4 --tasks 8 --group 1
ours mini-conv4-mb8-channels-last 15 --workload mini-conv4 --tasks 8 --channels-last
ours mini-conv4-mb8-bf16 15 --workload mini-conv4 --tasks 8 --autocast bf16
ours mini-conv4-mb2-compile 45 --workload mini-conv4 --tasks 2 --compile
ours omniglot-mb2-compile 45 --workload omniglot --tasks 2 --compile
ours mini-conv4-mb8-cuda-graph 60 --workload mini-conv4 --tasks 8 --cuda-graph
ours mini-conv4-mb8-tf32 15 --workload mini-conv4 --tasks 8 --tf32
bench sinusoid 15 --workload sinusoid

say "== GPU check done: ${SECONDS} s of ${BUDGET} s; $(wc -l <"$jsonl") lines in $jsonl"
