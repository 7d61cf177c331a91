"""The ``alfa`` command line: parsing (:mod:`~alfa.cli.main`), one function per subcommand
(:mod:`~alfa.cli.commands`, with :mod:`~alfa.cli.adapt`, :mod:`~alfa.cli.eval_overrides`) and
the Quick-start demo (:mod:`~alfa.cli.demo`).

The top layer: it may import any other part of ``alfa``, and nothing imports it (except
``python -m alfa``). Heavy modules are imported inside the subcommands, so ``alfa --help``
answers without importing torch.
"""
