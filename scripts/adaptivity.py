"""Task adaptivity on sinusoid regression (results/adaptivity.md, .json, .png): see
src/alfa/paper/adaptivity_report.py. Reads results/table8.json and the cells under results/table8/.

python scripts/adaptivity.py
"""

from alfa.paper.adaptivity_report import main

if __name__ == "__main__":
    raise SystemExit(main())
