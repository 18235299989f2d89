"""Admission steps the API server applies to new objects after defaulting, before validation."""

from __future__ import annotations

from controlplane.api.pb import core_pb2
from controlplane.api.placement import TAINT_NOT_READY, TAINT_UNREACHABLE


def add_default_tolerations(pod: core_pb2.Pod, *, not_ready_seconds: int, unreachable_seconds: int) -> None:
    """Give a pod limited tolerations of the not-ready/unreachable NoExecute taints unless it has its own
    (Kubernetes' DefaultTolerationSeconds): it is evicted from a failed node after that long, not at once."""
    for key, seconds in ((TAINT_NOT_READY, not_ready_seconds), (TAINT_UNREACHABLE, unreachable_seconds)):
        covered = any(
            (t.key == key or (not t.key and t.operator == "Exists")) and t.effect in ("", "NoExecute")
            for t in pod.spec.tolerations
        )
        if not covered:
            pod.spec.tolerations.add(key=key, operator="Exists", effect="NoExecute", toleration_seconds=seconds)
