"""``navarch-controller-manager``: not built yet (its own issue); says so rather than pretending."""

import sys


def main() -> None:
    """Exit 2: the controller manager is not implemented yet."""
    print("navarch-controller-manager: not implemented yet", file=sys.stderr)
    sys.exit(2)
