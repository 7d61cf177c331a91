#!/usr/bin/env bash
# The GPU check: CUDA tests, then every engine benchmark on the GPU, in one go (a few minutes on
# an H100/H200; each benchmark is stopped after 150 s). Writes one JSON file (all results, one object per benchmark) to
# benchmarks/results/gpu-<date>.json, or to $OUT when that is set, and prints it.
# Usage: bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
dest=${OUT:-benchmarks/results}
mkdir -p "$dest"
out="$dest/gpu-$(date -u +%Y%m%d).json"
log="$dest/gpu-check.log"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$log"

echo "== CUDA tests" | tee -a "$log"
"$PY" -m pytest -q -m gpu tests/test_gpu.py tests/test_execution.py 2>&1 | tail -5 | tee -a "$log"
tests_rc=${PIPESTATUS[0]}

results=()
bench() {  # workload, extra arguments
  local line
  line=$(timeout 150 "$PY" benchmarks/speed.py --device cuda --json --seconds 5 --min-iters 3 "$@" 2>>"$log" | tail -1)
  echo "$line" | tee -a "$log"
  [ -n "$line" ] && results+=("$line")
}
echo "== benchmarks" | tee -a "$log"
bench --workload sinusoid
bench --workload omniglot
bench --workload mini-conv4
bench --workload mini-conv4 --tasks 8
bench --workload mini-conv4 --channels-last
bench --workload mini-conv4 --autocast bf16
bench --workload mini-resnet12
bench --workload mini-conv4 --cuda-graph  # compiles first: last, and at most 150 s like each

{
  echo "{\"cuda_tests_exit\": $tests_rc, \"benchmarks\": ["
  for i in "${!results[@]}"; do
    [ "$i" -gt 0 ] && echo ","
    echo "${results[$i]}"
  done
  echo "]}"
} > "$out"
cat "$out"
