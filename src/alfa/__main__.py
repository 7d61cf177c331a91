"""``python -m alfa`` (and ``torchrun -m alfa``): the command line of :mod:`alfa.cli`."""

import sys

from alfa.cli import main

sys.exit(main())
