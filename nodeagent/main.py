"""``navarch-agent``: not built yet (its own issue); says so rather than pretending."""

import sys


def main() -> None:
    """Exit 2: the agent is not implemented yet."""
    print("navarch-agent: not implemented yet", file=sys.stderr)
    sys.exit(2)
