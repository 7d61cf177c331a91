"""``python -m alfa`` (and ``torchrun -m alfa``): the command line of :mod:`alfa.cli`."""

from alfa.cli import exit_with, main

exit_with(main())
