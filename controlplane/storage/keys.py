"""The key layout: ``/registry/<plural>/<namespace>/<name>``; cluster-scoped kinds omit the namespace."""

from __future__ import annotations

from controlplane.api.kinds import KindInfo

ROOT = "/registry/"


def object_key(info: KindInfo, namespace: str, name: str) -> str:
    """The key of one object."""
    if info.namespaced:
        return f"{ROOT}{info.plural}/{namespace}/{name}"
    return f"{ROOT}{info.plural}/{name}"


def kind_prefix(info: KindInfo, namespace: str = "") -> str:
    """The prefix of every object of a kind, or of a kind in one namespace."""
    if info.namespaced and namespace:
        return f"{ROOT}{info.plural}/{namespace}/"
    return f"{ROOT}{info.plural}/"


def prefix_end(prefix: str) -> bytes:
    """The exclusive end of the key range that holds every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1  # prefixes end in "/", so the last byte never overflows
    return bytes(raw)
