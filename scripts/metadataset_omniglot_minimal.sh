#!/usr/bin/env bash
# The runs of results/metadataset_omniglot_minimal.md, one after the other on one thread:
# fo-Proto-MAML, fo-Proto-MAML + ALFA, fo-MAML and fo-MAML + ALFA (variable ways: a meta-learned
# head of 50 outputs) on the minimal Omniglot sets in Meta-Dataset's record format. Run from the
# repository root.
set -euo pipefail
export OMP_NUM_THREADS=1 PYTHONPATH="$PWD/src"
PY=${PYTHON:-python}
OMNIGLOT=${OMNIGLOT:-../shared/data/omniglot}  # the folder of the two minimal zip files
rm -rf runs/metadataset/records/omniglot
$PY scripts/omniglot_to_metadataset.py "$OMNIGLOT/images_background_small1.zip" \
    "$OMNIGLOT/images_background_small2.zip" --out runs/metadataset/records/omniglot
CFG=configs/metadataset/omniglot_minimal_protomaml.yaml
$PY -m alfa.metadataset_run --config $CFG --out runs/metadataset/protomaml
$PY -m alfa.metadataset_run --config $CFG --out runs/metadataset/protomaml_alfa rule.name=alfa
$PY -m alfa.metadataset_run --config $CFG --out runs/metadataset/fomaml meta.head_init=learned
$PY -m alfa.metadataset_run --config $CFG --out runs/metadataset/fomaml_alfa \
    meta.head_init=learned rule.name=alfa
