#!/usr/bin/env bash
# Quick start: set up, then meta-train MAML, the learned-fixed rule and ALFA+MAML on 5-shot
# sinusoid regression and print their test MSE side by side (about 1-2 minutes on 2 CPU cores).
# Extra arguments go to `alfa demo` (e.g. --iterations 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/alfa demo "$@"
