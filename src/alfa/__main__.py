"""``python -m alfa`` (and ``torchrun -m alfa``): the command line of :mod:`alfa.cli.main`."""

from alfa.cli.main import exit_with, main

exit_with(main())
