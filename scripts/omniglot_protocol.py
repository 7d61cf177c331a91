"""The Omniglot protocol (results/omniglot_protocol.md, .json and omniglot_protocol/): see
src/alfa/paper/omniglot_run.py (the same as `alfa reproduce omniglot`, writing into results/).

python scripts/omniglot_protocol.py                       # every cell, resumable, 2 at once
python scripts/omniglot_protocol.py --only '20way-*-s0'   # the 20-way cells of seed 0
"""

from alfa.paper.omniglot_run import main

if __name__ == "__main__":
    raise SystemExit(main())
