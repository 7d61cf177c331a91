"""Table 8, controlled (issue 9, item 1): see src/alfa/controlled.py.

python scripts/table8_controlled.py                      # every cell, resumable
python scripts/table8_controlled.py --only '40x2-k5-*'   # the 40x2 5-shot cells
"""

from alfa.controlled import main

if __name__ == "__main__":
    raise SystemExit(main())
