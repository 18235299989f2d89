"""Ordering with real, slow terminations: pods whose processes ignore SIGTERM and hold their deletion for the
whole grace period (hollow nodes end a pod at once, so only real agents show a controller that looks past
terminating pods). A watch records every Pod and owner event (tests/history.py); the assertions read it.

- Recreate: no pod of the new template exists while any old pod exists, terminating ones included
  (plausible bug: the Deployment controller counts only pods without a deletionTimestamp as old and starts
  the new ReplicaSet while the old processes are still running their grace period).
- Foreground deletion: the owner outlives every dependent even when each dependent takes seconds to go
  (plausible bug: the garbage collector removes the owner's finalizer once every dependent is *marked*
  for deletion instead of once each is gone).
"""

from __future__ import annotations

from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.client.client import ApiClient
from controlplane.controllers.podcontrol import pod_is_ready
from tests.e2e.conftest import eventually_async
from tests.e2e.workloads.conftest import StartAgents
from tests.e2e.workloads.test_workloads import deployment
from tests.helpers import change
from tests.history import EventHistory, Seen

GRACE = 3


def stubborn(name: str, namespace: str, replicas: int, **spec: object) -> apps_pb2.Deployment:
    """A Deployment whose processes ignore SIGTERM, so each pod takes its whole grace period to go."""
    d: apps_pb2.Deployment = deployment(name, namespace, replicas, "true", "1", **spec)
    c = d.spec.template.spec.containers[0]
    del c.command[:]
    # Ready only once the trap is set (a SIGTERM that came before it would end the pod at once).
    c.command.extend(["sh", "-c", "trap '' TERM; touch trapped; while :; do sleep 0.2; done"])
    c.readiness_probe.exec.command.extend(["test", "-e", "trapped"])
    c.readiness_probe.period_seconds = 1
    d.spec.template.spec.termination_grace_period_seconds = GRACE
    return d


def stubborn_replica_set(name: str, namespace: str, replicas: int) -> apps_pb2.ReplicaSet:
    """The same pods under a bare ReplicaSet (no Deployment to recreate it once deleted)."""
    d = stubborn(name, namespace, replicas)
    rs = apps_pb2.ReplicaSet(api_version="apps/v1", kind="ReplicaSet")
    rs.metadata.name, rs.metadata.namespace = name, namespace
    rs.spec.replicas = replicas
    rs.spec.selector.CopyFrom(d.spec.selector)
    rs.spec.template.CopyFrom(d.spec.template)
    return rs


async def ready_pods(client: ApiClient, namespace: str) -> list[core_pb2.Pod]:
    pods = (await client.list(core_pb2.Pod, namespace)).items
    return [p for p in pods if not p.metadata.HasField("deletion_timestamp") and pod_is_ready(p)]


def _version(s: Seen) -> str:
    pod: core_pb2.Pod = s.object  # type: ignore[assignment]
    return pod.spec.containers[0].env[0].value


def overlaps(events: list[Seen]) -> list[str]:
    """Revisions at which pods of two templates existed at once (ADDED to DELETED, terminating included)."""
    existing: dict[str, str] = {}
    out = []
    for s in events:
        if s.kind != "Pod":
            continue
        if s.type == "DELETED":
            existing.pop(s.name, None)
        else:
            existing[s.name] = _version(s)
        if len(set(existing.values())) > 1:
            out.append(f"rev {s.revision}: {sorted(existing.items())}")
    return out


async def test_recreate_waits_for_terminating_pods_to_be_gone(
    client: ApiClient, namespace: str, agents: StartAgents
) -> None:
    await agents(2)
    await client.create(stubborn("web", namespace, 2, strategy={"type": "Recreate"}))

    async def two_running() -> bool:
        return len(await ready_pods(client, namespace)) == 2

    await eventually_async(two_running, timeout=60)
    async with EventHistory(client, ["Pod"], namespace).recording() as history:

        def set_version(d: apps_pb2.Deployment) -> None:
            d.spec.template.spec.containers[0].env[0].value = "2"

        await change(client, apps_pb2.Deployment, "web", namespace, set_version)

        async def new_running() -> bool:
            pods = await ready_pods(client, namespace)
            return len(pods) == 2 and all(p.spec.containers[0].env[0].value == "2" for p in pods)

        await eventually_async(new_running, timeout=60)
    events = history.ordered()
    terminating = [s for s in events if s.type == "MODIFIED" and s.object.metadata.HasField("deletion_timestamp")]
    assert terminating, "no old pod was seen terminating: the test did not exercise the grace period"
    assert overlaps(events) == [], "a new pod existed while an old one was still terminating"
    gone = [s for s in events if s.type == "DELETED"]
    assert gone and gone[-1].at - terminating[0].at >= GRACE - 1, "old pods went before their grace period"
    assert any(s.type == "ADDED" and _version(s) == "2" for s in events)


async def test_foreground_deletion_outlives_slowly_terminating_dependents(
    client: ApiClient, namespace: str, agents: StartAgents
) -> None:
    await agents(2)
    await client.create(stubborn_replica_set("web", namespace, 2))

    async def two_running() -> bool:
        return len(await ready_pods(client, namespace)) == 2

    await eventually_async(two_running, timeout=60)
    async with EventHistory(client, ["ReplicaSet", "Pod"], namespace).recording() as history:
        await client.delete(apps_pb2.ReplicaSet, "web", namespace, propagation_policy="Foreground")

        async def owner_gone() -> bool:
            return history.first("ReplicaSet", "DELETED") is not None

        await eventually_async(owner_gone, timeout=60)
    events = history.ordered()
    owner_deleted = history.first("ReplicaSet", "DELETED")
    assert owner_deleted is not None
    pods_deleted = [s for s in events if s.kind == "Pod" and s.type == "DELETED"]
    marked = [
        s
        for s in events
        if s.kind == "Pod" and s.type == "MODIFIED" and s.object.metadata.HasField("deletion_timestamp")
    ]
    assert marked, "no dependent was seen terminating: the test did not exercise the grace period"
    assert len(pods_deleted) == 2, (
        f"the owner went while dependents remained: {[(s.kind, s.type, s.name) for s in events]}"
    )
    assert owner_deleted.revision > max(s.revision for s in pods_deleted), "the owner went before a dependent"
    assert owner_deleted.at - marked[0].at >= GRACE - 1, "the owner went before the dependents' grace period"
