"""``python -m alfa``: the command line (:mod:`alfa.cli`)."""

import sys

from alfa.cli import main

sys.exit(main())
