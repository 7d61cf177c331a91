#!/usr/bin/env bash
# Set up, then lint, check the import layers, build the docs site strictly and run the test suite
# (GPU tests are skipped where no GPU is present). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks scripts examples docs/hooks
.venv/bin/ruff format --check src tests benchmarks scripts examples docs/hooks
.venv/bin/lint-imports --no-cache
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir .venv/site
exec .venv/bin/pytest -q "$@"
