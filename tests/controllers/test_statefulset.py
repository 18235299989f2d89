"""StatefulSet policies with hollow nodes, the real scheduler and the statefulset and persistentvolume
controllers in process: ``Parallel`` starts every ordinal without waiting; ``OnDelete`` changes a pod only when
it is deleted; deleting the set takes its pods and revisions with it (the garbage collector)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.api.objects import from_manifest
from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.client.client import ApiClient
from controlplane.controllers.podcontrol import CONTROLLER_REVISION_HASH, pod_is_ready
from tests.controllers.conftest import StartManager, pods_of
from tests.helpers import eventually_async
from tests.scheduler.conftest import StartHollow, StartScheduler


def statefulset(name: str, namespace: str, replicas: int, **spec: Any) -> apps_pb2.StatefulSet:
    return from_manifest(  # type: ignore[return-value]
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [{"name": "c", "command": ["sleep", "1"], "env": [{"name": "V", "value": "1"}]}]
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "storageClassName": "local",
                            "resources": {"requests": {"storage": "1Mi"}},
                        },
                    }
                ],
                **spec,
            },
        }
    )


@pytest.fixture
async def cluster_parts(hollow: StartHollow, start_scheduler: StartScheduler, start_manager: StartManager) -> None:
    await hollow(2, capacity={"cpu": "4", "memory": "8Gi", "pods": "110", "navarch.io/local-storage": "1Gi"})
    await start_scheduler("default-scheduler")
    await start_manager(["statefulset", "persistentvolume", "garbagecollector"])


async def ready_names(client: ApiClient, namespace: str) -> set[str]:
    return {p.metadata.name for p in await pods_of(client, namespace) if pod_is_ready(p)}


@pytest.mark.usefixtures("cluster_parts")
async def test_parallel_starts_every_ordinal_without_waiting(client: ApiClient, namespace: str) -> None:
    await client.create(statefulset("par", namespace, 4, podManagementPolicy="Parallel"))

    async def all_ready() -> bool:
        return await ready_names(client, namespace) == {f"par-{i}" for i in range(4)}

    await eventually_async(all_ready, timeout=30)
    pods = await pods_of(client, namespace)
    first_ready = min(
        c.last_transition_time.ToDatetime() for p in pods for c in p.status.conditions if c.type == "Ready"
    )
    # Every ordinal was created before any of them was Ready: nobody waited for a predecessor.
    assert all(p.metadata.creation_timestamp.ToDatetime() <= first_ready for p in pods)
    claims = {c.metadata.name for c in (await client.list(core_pb2.PersistentVolumeClaim, namespace)).items}
    assert claims == {f"data-par-{i}" for i in range(4)}


@pytest.mark.usefixtures("cluster_parts")
async def test_on_delete_changes_a_pod_only_when_it_is_deleted(client: ApiClient, namespace: str) -> None:
    await client.create(statefulset("od", namespace, 2, updateStrategy={"type": "OnDelete"}))

    async def both_ready() -> bool:
        return await ready_names(client, namespace) == {"od-0", "od-1"}

    await eventually_async(both_ready, timeout=30)
    before = {p.metadata.name: p for p in await pods_of(client, namespace)}
    sts = await client.get(apps_pb2.StatefulSet, "od", namespace)
    sts.spec.template.spec.containers[0].env[0].value = "2"
    await client.update(sts)

    async def noticed() -> bool:
        s = await client.get(apps_pb2.StatefulSet, "od", namespace)
        return s.status.update_revision != s.status.current_revision and s.status.observed_generation == 2

    await eventually_async(noticed, timeout=20)
    now = {p.metadata.name: p.metadata.uid for p in await pods_of(client, namespace)}
    assert now == {n: p.metadata.uid for n, p in before.items()}  # nothing was replaced on its own
    await client.delete(core_pb2.Pod, "od-1", namespace)

    async def od1_updated() -> bool:
        p = next((x for x in await pods_of(client, namespace) if x.metadata.name == "od-1"), None)
        return (
            p is not None and p.metadata.uid != before["od-1"].metadata.uid and p.spec.containers[0].env[0].value == "2"
        )

    await eventually_async(od1_updated, timeout=30)
    od0 = next(x for x in await pods_of(client, namespace) if x.metadata.name == "od-0")
    assert od0.metadata.uid == before["od-0"].metadata.uid
    assert (
        od0.metadata.labels[CONTROLLER_REVISION_HASH]
        != (await client.get(apps_pb2.StatefulSet, "od", namespace)).status.update_revision
    )

    # Deleting the set takes its pods and revisions with it; the claims stay (whenDeleted: Retain).
    await client.delete(apps_pb2.StatefulSet, "od", namespace)

    async def gone() -> bool:
        revisions = (await client.list(apps_pb2.ControllerRevision, namespace)).items
        return not await pods_of(client, namespace, active_only=False) and not revisions

    await eventually_async(gone, timeout=30)
    claims = {c.metadata.name for c in (await client.list(core_pb2.PersistentVolumeClaim, namespace)).items}
    assert claims == {"data-od-0", "data-od-1"}


async def test_a_claim_cannot_take_a_volume_reserved_for_another_claim(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["persistentvolume"])
    pv: Any = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"taken-{namespace}"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual",
                "local": {"path": f"taken-{namespace}"},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
                        ]
                    }
                },
                "claimRef": {"namespace": "elsewhere", "name": "owner", "uid": "uid-of-another-claim"},
            },
        }
    )
    await client.create(pv)
    thief: Any = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "thief", "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual",
                "resources": {"requests": {"storage": "1Gi"}},
                "volumeName": f"taken-{namespace}",
            },
        }
    )
    await client.create(thief)

    async def judged() -> bool:
        return (await client.get(core_pb2.PersistentVolumeClaim, "thief", namespace)).status.phase == "Pending"

    await eventually_async(judged, timeout=15)
    for _ in range(5):  # and it stays so
        await asyncio.sleep(0.4)
        claim_ = await client.get(core_pb2.PersistentVolumeClaim, "thief", namespace)
        assert claim_.status.phase == "Pending"
    await client.delete(core_pb2.PersistentVolume, f"taken-{namespace}")
