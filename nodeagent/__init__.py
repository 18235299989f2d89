"""navarch-agent: the node agent (arrives with its own issue)."""
