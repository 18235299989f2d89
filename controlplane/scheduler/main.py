"""``navarch-scheduler``: not built yet (its own issue); says so rather than pretending."""

import sys


def main() -> None:
    """Exit 2: the scheduler is not implemented yet."""
    print("navarch-scheduler: not implemented yet", file=sys.stderr)
    sys.exit(2)
