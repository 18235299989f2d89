"""The ``navarch`` subcommands, one module per family."""
