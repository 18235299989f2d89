"""Merge patches: RFC 7386 JSON merge patch, and the three-way patch ``apply`` computes from it.

The pair is one contract: ``merge_patch(live, three_way_patch(last, wanted, live))`` holds every field the
manifest asks for, and no longer holds a field the previous apply set and this manifest dropped
(tests/unit/test_patches.py checks it on generated documents).
"""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch; returns a new value (``null`` in the patch removes a key)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def covers(live: Any, wanted: Any) -> bool:
    """Whether ``live`` already has everything ``wanted`` asks for (servers add defaults beside it)."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(covers(live.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(live) == len(wanted)
            and all(covers(a, b) for a, b in zip(live, wanted, strict=True))
        )
    return bool(live == wanted)


def three_way_patch(last: dict[str, Any] | None, wanted: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """The merge patch ``apply`` sends: fields the last applied manifest set and ``wanted`` dropped are removed;
    fields ``wanted`` sets that ``live`` does not already have are set (lists are replaced whole, as merge
    patches do); fields only the server or other writers set are left alone."""
    patch: dict[str, Any] = {}
    for key in last or {}:
        if key not in wanted:
            patch[key] = None
    for key, value in wanted.items():
        current = live.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            previous = (last or {}).get(key)
            sub = three_way_patch(previous if isinstance(previous, dict) else None, value, current)
            if sub:
                patch[key] = sub
        elif not covers(current, value):
            patch[key] = copy.deepcopy(value)
    return patch
