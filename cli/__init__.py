"""The ``navarch`` command."""
