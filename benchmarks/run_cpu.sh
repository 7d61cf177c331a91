#!/usr/bin/env bash
# Every CPU benchmark of benchmarks/README.md, one after the other; one JSON line each in
# benchmarks/results/cpu-<date>.jsonl and one profiled iteration per side in benchmarks/profiles/.
# About 40 minutes on 2 cores. Usage: bash benchmarks/run_cpu.sh [NAME ...] (default: all).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=benchmarks/results/cpu-$(date -u +%Y%m%d).jsonl
only=" $* "
run() {  # name, arguments
  local name=$1
  shift
  if [ "$only" != "  " ] && [[ "$only" != *" $name "* ]]; then return; fi
  "$PY" benchmarks/speed.py --json --profile "benchmarks/profiles/$name" "$@" | tail -1 | tee -a "$out"
}
run sinusoid-1t --workload sinusoid --threads 1
run sinusoid-2t --workload sinusoid --threads 2
run sinusoid-1t-compile --workload sinusoid --threads 1 --compile --seconds 20
run sinusoid-2t-compile --workload sinusoid --threads 2 --compile --seconds 20
run omniglot-1t --workload omniglot --threads 1 --min-iters 3
run omniglot-2t --workload omniglot --threads 2 --min-iters 3
run omniglot-1t-grouped --workload omniglot --threads 1 --min-iters 3 --group 0
run mini-conv4-1t --workload mini-conv4 --threads 1 --seconds 1 --min-iters 2
run mini-conv4-1t-recompute --workload mini-conv4 --threads 1 --seconds 1 --min-iters 2 --recompute
run mini-conv4-2t --workload mini-conv4 --threads 2 --seconds 1 --min-iters 2
run mini-resnet12-1t-recompute --workload mini-resnet12 --threads 1 --seconds 0 --min-iters 1 \
  --recompute --max-memory-gb 16
