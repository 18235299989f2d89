"""navarch-scheduler (arrives with its own issue)."""
