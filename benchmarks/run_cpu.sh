#!/usr/bin/env bash
# Every CPU benchmark of benchmarks/README.md, one after the other; one JSON line each in
# benchmarks/results/cpu-<date>.jsonl (speed.py), floor-<date>.jsonl (floor.py) and
# levers-<date>.jsonl (levers.py), and one profiled iteration per side in benchmarks/profiles/.
# About an hour on 2 cores; run it on an idle machine (every row records the load average before
# and after it, and the CPU). Usage: bash benchmarks/run_cpu.sh [NAME ...] (default: all).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
day=$(date -u +%Y%m%d)
out=benchmarks/results/cpu-$day.jsonl
only=" $* "
want() { [ "$only" = "  " ] || [[ "$only" == *" $1 "* ]]; }
run() {  # name, speed.py arguments
  local name=$1
  shift
  want "$name" || return 0
  "$PY" benchmarks/speed.py --json --profile "benchmarks/profiles/$name" "$@" | tail -1 | tee -a "$out"
}
floor() {  # name, floor.py arguments
  local name=$1
  shift
  want "$name" || return 0
  "$PY" benchmarks/floor.py --json "$@" | tail -1 | tee -a "benchmarks/results/floor-$day.jsonl"
}
levers() {  # name, levers.py arguments
  local name=$1
  shift
  want "$name" || return 0
  "$PY" benchmarks/levers.py "$@" | tee -a "benchmarks/results/levers-$day.log" | tail -1 \
    >> "benchmarks/results/levers-$day.jsonl"
}
run sinusoid-1t --workload sinusoid --threads 1
run sinusoid-2t --workload sinusoid --threads 2
run sinusoid-1t-compile --workload sinusoid --threads 1 --compile --seconds 20
run sinusoid-2t-compile --workload sinusoid --threads 2 --compile --seconds 20
# The paper's main workloads: the engine as it is, with the floor beside it, ...
run omniglot-1t --workload omniglot --threads 1 --min-iters 3 --floor
run omniglot-2t --workload omniglot --threads 2 --min-iters 3 --floor
run mini-conv4-1t --workload mini-conv4 --threads 1 --seconds 1 --min-iters 3 --floor
run mini-conv4-2t --workload mini-conv4 --threads 2 --seconds 1 --min-iters 3 --floor
# ... the engine before the fused blocks (separate layers, NCHW), ...
run omniglot-2t-unfused --workload omniglot --threads 2 --min-iters 3 --kernels unfused
run mini-conv4-2t-unfused --workload mini-conv4 --threads 2 --seconds 1 --min-iters 3 \
  --kernels unfused
# ... and against a reference that keeps freed memory for reuse as ours does.
run omniglot-2t-same-allocator --workload omniglot --threads 2 --min-iters 3 \
  --reference-reuse-memory
run mini-conv4-2t-same-allocator --workload mini-conv4 --threads 2 --seconds 1 --min-iters 3 \
  --reference-reuse-memory
run omniglot-1t-grouped --workload omniglot --threads 1 --min-iters 3 --group 0
run mini-conv4-1t-recompute --workload mini-conv4 --threads 1 --seconds 1 --min-iters 2 --recompute
run mini-resnet12-1t-recompute --workload mini-resnet12 --threads 1 --seconds 0 --min-iters 1 \
  --recompute --max-memory-gb 16 --floor
floor floor-mini-resnet12-2t --workload mini-resnet12 --threads 2
# Each lever against the reference in one process (levers.py), without and with the allocator.
levers levers-mini-conv4-2t --workload mini-conv4 --threads 2 --rounds 5
levers levers-mini-conv4-2t-reuse --workload mini-conv4 --threads 2 --rounds 5 --reuse-memory
levers levers-omniglot-2t --workload omniglot --threads 2 --rounds 5
levers levers-omniglot-2t-reuse --workload omniglot --threads 2 --rounds 5 --reuse-memory
