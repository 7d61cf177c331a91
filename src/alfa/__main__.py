"""``python -m alfa`` (and ``torchrun -m alfa``): the command line of :mod:`alfa.cli`."""

import os
import sys

from alfa.cli import main

code = main()
if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
    # A process of a torchrun job has finished its command and left the process group together
    # with the others; at interpreter exit, the destructors of the communication library's
    # threads can abort the process ("terminate called without an active exception"), which
    # torchrun reports as a failed job. Nothing is left to clean up: leave without them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
