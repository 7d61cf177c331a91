#!/usr/bin/env bash
# Set up, then lint and run the test suite (GPU tests are skipped where no GPU is present).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
exec .venv/bin/pytest -q "$@"
