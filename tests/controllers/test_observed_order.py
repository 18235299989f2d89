"""Ordering and timing observed, not inferred: a watch records every event from before the test acts
(tests/history.py), and the assertions read that history.

- Foreground deletion: the owner's DELETED comes after every dependent's DELETED (plausible bug: the garbage
  collector deletes the owner first, as Background does; the end state is the same, so only the order shows it).
- Background deletion: the owner goes first, its dependents after (plausible bug: Background blocking on
  dependents like Foreground).
- Job TTL: Complete is seen before the Job is deleted, and the deletion comes no earlier than the TTL after
  completion (plausible bug: the TTL ignored, the finished Job deleted at once).
"""

from __future__ import annotations

import pytest

from controlplane.api.pb import apps_pb2, batch_pb2
from controlplane.client.client import ApiClient
from tests.controllers.conftest import StartManager, pods_of, set_pod_state
from tests.controllers.test_endpoints_namespace_gc import gone, owned_rs
from tests.controllers.test_job import job, running_pods
from tests.helpers import eventually_async
from tests.history import EventHistory


@pytest.mark.parametrize("policy", ["Foreground", "Background"])
async def test_deletion_order_follows_the_propagation_policy(
    client: ApiClient, namespace: str, start_manager: StartManager, policy: str
) -> None:
    await start_manager(["replicaset", "garbagecollector"])
    await client.create(owned_rs("web", namespace))

    async def two() -> bool:
        return len(await pods_of(client, namespace)) == 2

    await eventually_async(two)
    async with EventHistory(client, ["ReplicaSet", "Pod"], namespace).recording() as history:
        await client.delete(apps_pb2.ReplicaSet, "web", namespace, propagation_policy=policy)
        await eventually_async(lambda: gone(client, apps_pb2.ReplicaSet, "web", namespace))

        async def no_pods() -> bool:
            return await pods_of(client, namespace, active_only=False) == []

        await eventually_async(no_pods)
        await eventually_async(lambda: _both_recorded(history))
    events = history.ordered()
    owner_gone = next(i for i, s in enumerate(events) if s.kind == "ReplicaSet" and s.type == "DELETED")
    pods_gone = [i for i, s in enumerate(events) if s.kind == "Pod" and s.type == "DELETED"]
    assert len(pods_gone) == 2, [(s.kind, s.type, s.name) for s in events]
    if policy == "Foreground":
        assert owner_gone > max(pods_gone), "the owner was deleted before its dependents"
        marked = [
            s
            for s in events[:owner_gone]
            if s.kind == "ReplicaSet" and "foregroundDeletion" in s.object.metadata.finalizers
        ]
        assert marked, "the owner was never seen marked for foreground deletion"
        assert marked[0].revision < min(events[i].revision for i in pods_gone), "marked only after a dependent went"
    else:
        assert owner_gone < min(pods_gone), "Background deletes the owner first, then its dependents"


async def _both_recorded(history: EventHistory) -> bool:
    kinds = {(s.kind, s.type) for s in history.events}
    return ("ReplicaSet", "DELETED") in kinds and sum(1 for s in history.events if s.type == "DELETED") >= 3


async def test_a_finished_job_lives_its_ttl_after_completion_then_goes(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    ttl = 3
    await start_manager(["job"])
    async with EventHistory(client, ["Job"], namespace).recording() as history:
        await client.create(job("work", namespace, ttlSecondsAfterFinished=ttl))

        async def one_pod() -> bool:
            return len(await running_pods(client, namespace)) == 1

        await eventually_async(one_pod)
        (pod,) = await running_pods(client, namespace)
        await set_pod_state(client, pod, "Succeeded")

        async def deleted() -> bool:
            return history.first("Job", "DELETED") is not None

        await eventually_async(deleted, timeout=ttl + 20)
    events = history.ordered()
    complete = next(
        (
            s
            for s in events
            if s.type == "MODIFIED"
            and any(c.type == "Complete" and c.status == "True" for c in s.object.status.conditions)
        ),
        None,
    )
    deletion = history.first("Job", "DELETED")
    assert complete is not None and deletion is not None
    assert complete.revision < deletion.revision, "the Job was deleted before it was seen Complete"
    finished: batch_pb2.Job = complete.object  # type: ignore[assignment]
    completed_at = finished.status.completion_time.seconds
    # completionTime has whole seconds: the deletion may come at most 1 s early by that rounding, never more.
    assert deletion.at >= completed_at + ttl - 1, f"deleted {deletion.at - completed_at:.1f}s after completion"
