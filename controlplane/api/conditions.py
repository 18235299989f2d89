"""Object conditions (``status.conditions``) as Kubernetes keeps them, shared by every component.

A condition list holds at most one condition per ``type``. :func:`set_condition` replaces the one of a type and
keeps its ``lastTransitionTime`` when the status did not change (a condition's transition time says when it
last *changed*, not when it was last written). :func:`status_of` reads a type's status, "Unknown" when the
object has none — which is what Kubernetes reports for a node or pod that never posted the condition.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from controlplane.api.pb import core_pb2, meta_pb2


def new_condition(
    type_: str, status: str, reason: str = "", message: str = "", now: datetime.datetime | None = None
) -> meta_pb2.Condition:
    """A condition whose probe, update and transition times are ``now`` (left unset when ``None``)."""
    c = meta_pb2.Condition(type=type_, status=status, reason=reason, message=message)
    if now is not None:
        c.last_transition_time.FromDatetime(now)
        c.last_update_time.FromDatetime(now)
        c.last_probe_time.FromDatetime(now)
    return c


def find(conditions: Iterable[meta_pb2.Condition], type_: str) -> meta_pb2.Condition | None:
    """The condition of ``type_``, or ``None``."""
    return next((c for c in conditions if c.type == type_), None)


def status_of(conditions: Iterable[meta_pb2.Condition], type_: str) -> str:
    """The status ("True", "False", "Unknown") of the condition of ``type_``; "Unknown" if there is none."""
    c = find(conditions, type_)
    return "Unknown" if c is None else c.status


def is_true(conditions: Iterable[meta_pb2.Condition], type_: str) -> bool:
    """Whether the condition of ``type_`` is present and "True"."""
    return status_of(conditions, type_) == "True"


def first_true(conditions: Iterable[meta_pb2.Condition], *types: str) -> meta_pb2.Condition | None:
    """The first condition of one of ``types`` whose status is "True" (a Job's Complete or Failed), or None."""
    return next((c for c in conditions if c.type in types and c.status == "True"), None)


def set_condition(conditions: Iterable[meta_pb2.Condition], new: meta_pb2.Condition) -> list[meta_pb2.Condition]:
    """The conditions with ``new`` replacing the one of its type, last. When the status is unchanged the old
    transition time is kept (and written into ``new``); the other conditions keep their order."""
    out: list[meta_pb2.Condition] = []
    for c in conditions:
        if c.type == new.type:
            if c.status == new.status and c.HasField("last_transition_time"):
                new.last_transition_time.CopyFrom(c.last_transition_time)
            continue
        out.append(c)
    out.append(new)
    return out


def node_ready(node: core_pb2.Node) -> str:
    """The node's Ready status: "True", "False", or "Unknown" (also when it never reported one)."""
    return status_of(node.status.conditions, "Ready")


def pod_ready(pod: core_pb2.Pod) -> bool:
    """Whether the pod's Ready condition is "True"."""
    return is_true(pod.status.conditions, "Ready")
