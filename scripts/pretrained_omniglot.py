"""The pretrained Omniglot models from a row of the Omniglot protocol
(results/pretrained_omniglot.md, .json; src/alfa/resources/pretrained/): see
src/alfa/paper/pretrained_recipe.py.

python scripts/pretrained_omniglot.py --method learned_fixed               # both ways
python scripts/pretrained_omniglot.py --method alfa_maml --variant jitter --ways 20
"""

from alfa.paper.pretrained_recipe import main

if __name__ == "__main__":
    raise SystemExit(main())
