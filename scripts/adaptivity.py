"""Task adaptivity on sinusoid regression (results/adaptivity.md, .json, .png): see
src/alfa/adaptivity_report.py. Reads results/table8.json and the cells under results/table8/.

python scripts/adaptivity.py
"""

from alfa.adaptivity_report import main

if __name__ == "__main__":
    raise SystemExit(main())
