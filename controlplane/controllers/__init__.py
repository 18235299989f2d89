"""navarch-controllers (arrives with its own issue)."""
