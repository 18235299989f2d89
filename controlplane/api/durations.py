"""Go-style durations (``30s``, ``5m``, ``1h30m``, ``250ms``) as used by Kubernetes' flags; a bare number is
seconds."""

from __future__ import annotations

import math
import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


MAX_DURATION_LENGTH = 64
"""Longer strings are refused before parsing (the pattern scan is quadratic on a long run of digits)."""


def parse_duration(text: str) -> float:
    """Seconds in a duration (at most ``MAX_DURATION_LENGTH`` characters); ``ValueError`` naming the examples
    otherwise."""
    if len(text) > MAX_DURATION_LENGTH:
        raise ValueError(f"{text[:20]!r}... is not a duration: longer than {MAX_DURATION_LENGTH} characters")
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"{text!r} is not a duration (examples: 30s, 5m, 1h30m)")
        return seconds
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration (examples: 30s, 5m, 1h30m)")
    return sum(float(n) * _UNIT[u] for n, u in parts)
