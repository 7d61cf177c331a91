#!/usr/bin/env bash
# Re-derive every file under results/ from the code, into a fresh folder:
#
#   bash scripts/reproduce_results.sh [--quick] [OUT]
#
# OUT (default runs/rederived) receives results/ (the same files as the repository's results/)
# and runs/ (the training runs behind them); compare with `diff -r results OUT/results`.
# What writes what:
#   scripts/table8.py            results/table8.md, results/table8.json, results/table8/<cell>/
#   scripts/omniglot_minimal.py  results/omniglot_minimal.md, results/omniglot_minimal.json
#   scripts/clip_frequency.py    results/clip_frequency.json
#   scripts/adaptivity.py        results/adaptivity.md, .json, .png (from results/table8*)
#   scripts/metadataset_omniglot_minimal.py
#                                results/metadataset_omniglot_minimal.md, .json
#   scripts/omniglot_protocol.py results/omniglot_protocol.md, .json, results/omniglot_protocol/;
#                                with --variant jitter, results/omniglot_protocol_jitter*
#   scripts/pretrained_omniglot.py
#                                results/pretrained_omniglot.md, .json, results/pretrained_omniglot/
#                                and the exported models, into OUT/pretrained (compare with
#                                src/alfa/resources/pretrained/)
# The full run trains every cell of each recipe (Table 8: 1-3 minutes per 40x2 cell and 5-10
# per 80x3 cell on one core, train_seconds in results/table8.json; about 20 minutes for
# Omniglot; about 15 minutes for Omniglot in Meta-Dataset's format; the Omniglot protocol's 30
# cells take far longer: train_seconds in results/omniglot_protocol.json, and the pretrained
# model's two runs about an hour each: results/pretrained_omniglot.md). JOBS (default 1) trains
# that many Table 8 cells, Omniglot protocol cells or pretrained-model runs at once. --quick
# shortens each script to a few iterations and cells (seconds; the tests run it twice and
# compare the outputs).
# PYTHON (default: python) runs the scripts. The Omniglot configs read the minimal zips from
# $ALFA_DATA/omniglot (README, Getting the data); OMNIGLOT_DATA names their folder instead.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [[ "${1:-}" == "--quick" ]]; then
    quick=1
    shift
fi
out="${1:-runs/rederived}"
py="${PYTHON:-python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$out/results" "$out/runs"
omniglot=()
if [[ -n "${OMNIGLOT_DATA:-}" ]]; then
    omniglot=(--data "$OMNIGLOT_DATA")
fi
if (( quick )); then
    "$py" scripts/table8.py --results "$out/results" --runs "$out/runs/table8" \
        --iterations 2 --tasks 20 --only 40x2-k5-alfa_maml-s0
    "$py" scripts/omniglot_minimal.py --results "$out/results" --runs "$out/runs/omniglot" \
        --iterations 2 --tasks 5 --ways 5 --methods alfa_random "${omniglot[@]}"
    "$py" scripts/clip_frequency.py --out "$out/results/clip_frequency.json" \
        --iterations 3 --methods alfa_maml
    "$py" scripts/adaptivity.py --results "$out/results" --tasks 20
    "$py" scripts/metadataset_omniglot_minimal.py --results "$out/results" \
        --runs "$out/runs/metadataset" --iterations 2 --tasks 5 "${omniglot[@]}"
    "$py" scripts/omniglot_protocol.py --results "$out/results" \
        --runs "$out/runs/omniglot_protocol" --iterations 2 --tasks 5 --jobs 1 \
        --only 5way-alfa_maml-s0 5way-maml-s0 "${omniglot[@]}"
    "$py" scripts/omniglot_protocol.py --results "$out/results" --variant jitter \
        --runs "$out/runs/omniglot_protocol" --iterations 2 --tasks 5 --jobs 1 \
        --only 5way-alfa_maml-s0 "${omniglot[@]}"
    "$py" scripts/pretrained_omniglot.py --results "$out/results" --method alfa_maml \
        --variant jitter --ways 5 --runs "$out/runs/pretrained_omniglot" --out "$out/pretrained" \
        --tasks 5 --jobs 1 "${omniglot[@]}"
else
    "$py" scripts/table8.py --results "$out/results" --runs "$out/runs/table8" \
        --jobs "${JOBS:-1}"
    "$py" scripts/adaptivity.py --results "$out/results"
    "$py" scripts/omniglot_minimal.py --results "$out/results" --runs "$out/runs/omniglot" \
        "${omniglot[@]}"
    "$py" scripts/clip_frequency.py --out "$out/results/clip_frequency.json"
    "$py" scripts/metadataset_omniglot_minimal.py --results "$out/results" \
        --runs "$out/runs/metadataset" "${omniglot[@]}"
    "$py" scripts/omniglot_protocol.py --results "$out/results" \
        --runs "$out/runs/omniglot_protocol" --jobs "${JOBS:-1}" "${omniglot[@]}"
    "$py" scripts/omniglot_protocol.py --results "$out/results" --variant jitter \
        --runs "$out/runs/omniglot_protocol" --jobs "${JOBS:-1}" \
        --only '20way-alfa_maml-s[01]' "${omniglot[@]}"
    "$py" scripts/pretrained_omniglot.py --results "$out/results" --method alfa_maml \
        --variant jitter --ways 20 --runs "$out/runs/pretrained_omniglot" \
        --out "$out/pretrained" --jobs "${JOBS:-1}" "${omniglot[@]}"
fi
echo "re-derived results in $out/results"
