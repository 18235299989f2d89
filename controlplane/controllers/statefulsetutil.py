"""A StatefulSet's arithmetic, as pure functions: ordinals, which revision a pod gets, what a rolling update
may take down next.

Pods are ``<set>-<ordinal>`` (0 .. replicas-1); claims are ``<template>-<set>-<ordinal>``. With
``RollingUpdate``, ordinals below ``partition`` keep (and are recreated at) the current revision, the others
get the update revision, highest ordinal first, at most ``maxUnavailable`` not Ready at a time; ``OnDelete``
changes a pod only when it is deleted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def pod_name(set_name: str, ordinal: int) -> str:
    """``<set>-<ordinal>``."""
    return f"{set_name}-{ordinal}"


def claim_name(template: str, set_name: str, ordinal: int) -> str:
    """``<claim template>-<set>-<ordinal>``, as Kubernetes names them."""
    return f"{template}-{set_name}-{ordinal}"


def ordinal_of(set_name: str, name: str) -> int | None:
    """The ordinal in a pod's name, or None if it is not one of this set's names."""
    m = re.fullmatch(re.escape(set_name) + r"-(0|[1-9][0-9]{0,8})", name)
    return int(m.group(1)) if m else None


def revision_for(ordinal: int, partition: int, rolling: bool, current: str, update: str) -> str:
    """The revision a (new) pod of ``ordinal`` is made at."""
    return current if rolling and ordinal < partition else update


@dataclass(frozen=True)
class Member:
    """What the update arithmetic needs of one existing pod."""

    ordinal: int
    revision: str
    ready: bool
    terminating: bool = False


def next_to_update(
    members: Mapping[int, Member], replicas: int, partition: int, update: str, max_unavailable: int
) -> list[int]:
    """The ordinals to delete now so that they come back at ``update``: from the highest down to
    ``partition``, while fewer than ``max_unavailable`` pods are unavailable (not Ready, terminating or
    missing)."""
    unavailable = sum(1 for i in range(replicas) if i not in members or not members[i].ready or members[i].terminating)
    out: list[int] = []
    for i in range(replicas - 1, partition - 1, -1):
        m = members.get(i)
        if m is None or m.terminating or m.revision == update:
            continue
        if unavailable >= max_unavailable and m.ready:
            break
        out.append(i)
        if m.ready:
            unavailable += 1
    return out


def condemned(ordinals: Iterable[int], replicas: int) -> list[int]:
    """Ordinals beyond ``replicas``, highest first (scaled down in that order)."""
    return sorted((i for i in ordinals if i >= replicas), reverse=True)
