"""Table 8, controlled (results/table8.md, results/table8.json, results/table8/): see
src/alfa/paper/table8_run.py (the same as `alfa reproduce table8`, writing into results/).

python scripts/table8.py                      # every cell, resumable
python scripts/table8.py --only '40x2-k5-*'   # the 40x2 5-shot cells
"""

from alfa.paper.table8_run import main

if __name__ == "__main__":
    raise SystemExit(main())
