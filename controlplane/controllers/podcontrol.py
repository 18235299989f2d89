"""Creating and deleting a controller's pods: pods from a template, template hashes, and slow-start batches.

Creations go out in batches of 1, 2, 4, ... and stop at the first batch with a failure, so a template the
API refuses costs one request per sync instead of hundreds (Kubernetes' ``slowStartBatch``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message

from controlplane.api import conditions
from controlplane.api.objects import meta
from controlplane.api.pb import core_pb2
from controlplane.controllers.ownership import controller_ref

POD_TEMPLATE_HASH = "pod-template-hash"
"""The label a Deployment's ReplicaSets and their pods carry: the hash of the template they were made from."""
CONTROLLER_REVISION_HASH = "controller-revision-hash"
"""The label DaemonSet (and StatefulSet) pods carry: the hash of the template revision they run."""


def template_hash(
    template: core_pb2.PodTemplateSpec, collision_count: int = 0, *, label: str = POD_TEMPLATE_HASH
) -> str:
    """A short stable hash of a pod template, ignoring the hash ``label`` it may already carry; a different
    ``collision_count`` gives a different hash (Kubernetes' answer to a name collision)."""
    t = core_pb2.PodTemplateSpec()
    t.CopyFrom(template)
    t.metadata.labels.pop(label, None)
    digest = hashlib.sha256(t.SerializeToString(deterministic=True) + str(collision_count).encode())
    return digest.hexdigest()[:10]


def pod_from_template(
    template: core_pb2.PodTemplateSpec, owner: Message, *, generate_name: str, namespace: str
) -> core_pb2.Pod:
    """A new Pod from ``template``, controlled by ``owner``."""
    pod = core_pb2.Pod(api_version="v1", kind="Pod")
    pod.metadata.CopyFrom(template.metadata)
    pod.metadata.name = ""
    pod.metadata.generate_name = generate_name
    pod.metadata.namespace = namespace
    pod.metadata.owner_references.append(controller_ref(owner))
    pod.spec.CopyFrom(template.spec)
    return pod


async def slow_start(
    count: int, create: Callable[[], Awaitable[None]], initial: int = 1
) -> tuple[int, Exception | None]:
    """Call ``create`` ``count`` times in growing concurrent batches; stop after a batch with a failure.
    Returns (how many succeeded, the first error)."""
    done = 0
    batch = min(count, initial)
    while batch > 0:
        results = await asyncio.gather(*(create() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r
        done += batch - len(errors)
        if errors:
            return done, errors[0]
        remaining = count - done
        batch = min(remaining, 2 * batch)
    return done, None


def pod_is_active(pod: core_pb2.Pod) -> bool:
    """Not finished and not being deleted (the pods a ReplicaSet counts)."""
    return pod.status.phase not in ("Succeeded", "Failed") and not meta(pod).HasField("deletion_timestamp")


def pod_is_ready(pod: core_pb2.Pod) -> bool:
    """The pod's Ready condition is True."""
    return conditions.pod_ready(pod)


def ready_since(pod: core_pb2.Pod) -> float | None:
    """When the pod last became Ready (epoch seconds), or None if it is not Ready."""
    for c in pod.status.conditions:
        if c.type == "Ready" and c.status == "True":
            return c.last_transition_time.seconds + c.last_transition_time.nanos / 1e9
    return None


def pod_is_available(pod: core_pb2.Pod, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``min_ready_seconds``."""
    since = ready_since(pod)
    if since is None:
        return False
    return min_ready_seconds <= 0 or since + min_ready_seconds <= now


def next_available_in(pods: list[core_pb2.Pod], min_ready_seconds: int, now: float) -> float | None:
    """Seconds until the next ready-but-not-yet-available pod becomes available (no event says so)."""
    waits = [
        since + min_ready_seconds - now
        for p in pods
        if (since := ready_since(p)) is not None and since + min_ready_seconds > now
    ]
    return min(waits) if waits else None
