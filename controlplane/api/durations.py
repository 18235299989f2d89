"""Go-style durations (``30s``, ``5m``, ``1h30m``, ``250ms``) as used by Kubernetes' flags; a bare number is
seconds."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in a duration; ``ValueError`` naming the examples otherwise."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration (examples: 30s, 5m, 1h30m)")
    return sum(float(n) * _UNIT[u] for n, u in parts)
