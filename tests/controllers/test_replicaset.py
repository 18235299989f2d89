"""ReplicaSet controller against a real API server: counts, adoption, release, deletion order, status."""

from __future__ import annotations

from typing import Any

from controlplane.api.objects import from_manifest
from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.client.client import ApiClient
from controlplane.controllers.ownership import controller_of
from tests.controllers.conftest import StartManager, pods_of, set_pod_state
from tests.helpers import eventually_async


def replicaset(name: str, namespace: str, replicas: int, *, app: str = "web", **spec: Any) -> apps_pb2.ReplicaSet:
    return from_manifest(  # type: ignore[return-value]
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": app}},
                "template": {
                    "metadata": {"labels": {"app": app}},
                    "spec": {"containers": [{"name": "main", "command": ["sleep", "3600"]}]},
                },
                **spec,
            },
        }
    )


async def count_is(client: ApiClient, namespace: str, n: int) -> bool:
    return len(await pods_of(client, namespace)) == n


async def test_replicaset_creates_then_scales_down_and_up(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["replicaset"])
    rs = await client.create(replicaset("web", namespace, 5))
    await eventually_async(lambda: count_is(client, namespace, 5))
    pods = await pods_of(client, namespace)
    assert all(controller_of(p) is not None and controller_of(p).uid == rs.metadata.uid for p in pods)  # type: ignore[union-attr]
    assert all(p.metadata.name.startswith("web-") for p in pods)
    await client.patch(apps_pb2.ReplicaSet, "web", {"spec": {"replicas": 2}}, namespace)
    await eventually_async(lambda: count_is(client, namespace, 2))
    await client.patch(apps_pb2.ReplicaSet, "web", {"spec": {"replicas": 4}}, namespace)
    await eventually_async(lambda: count_is(client, namespace, 4))

    async def observed() -> bool:
        got = await client.get(apps_pb2.ReplicaSet, "web", namespace)
        return got.status.replicas == 4 and got.status.observed_generation == got.metadata.generation

    await eventually_async(observed)


async def test_scale_down_deletes_unready_pods_first(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["replicaset"])
    await client.create(replicaset("web", namespace, 3))
    await eventually_async(lambda: count_is(client, namespace, 3))
    pods = sorted(await pods_of(client, namespace), key=lambda p: p.metadata.name)
    for p in pods[:2]:
        await set_pod_state(client, p, "Running", ready=True)
    await set_pod_state(client, pods[2], "Running", ready=False)

    async def two_ready() -> bool:
        got = await client.get(apps_pb2.ReplicaSet, "web", namespace)
        return got.status.ready_replicas == 2

    await eventually_async(two_ready)
    await client.patch(apps_pb2.ReplicaSet, "web", {"spec": {"replicas": 2}}, namespace)
    await eventually_async(lambda: count_is(client, namespace, 2))
    left = {p.metadata.name for p in await pods_of(client, namespace)}
    assert left == {pods[0].metadata.name, pods[1].metadata.name}


async def test_adopts_matching_orphans_and_releases_relabelled_pods(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    orphan = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "orphan", "namespace": namespace, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "main", "command": ["sleep", "3600"]}]},
        }
    )
    await client.create(orphan)
    await start_manager(["replicaset"])
    rs = await client.create(replicaset("web", namespace, 2))
    await eventually_async(lambda: count_is(client, namespace, 2))
    adopted = await client.get(core_pb2.Pod, "orphan", namespace)
    ref = controller_of(adopted)
    assert ref is not None and ref.uid == rs.metadata.uid
    # Relabelled out of the selector: released (no owner) and replaced.
    await client.patch(core_pb2.Pod, "orphan", {"metadata": {"labels": {"app": "other"}}}, namespace)

    async def released() -> bool:
        p = await client.get(core_pb2.Pod, "orphan", namespace)
        mine = [q for q in await pods_of(client, namespace) if q.metadata.labels.get("app") == "web"]
        return controller_of(p) is None and len(mine) == 2

    await eventually_async(released)


async def test_available_replicas_wait_for_min_ready_seconds(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["replicaset"])
    await client.create(replicaset("web", namespace, 1, minReadySeconds=2))
    await eventually_async(lambda: count_is(client, namespace, 1))
    (pod,) = await pods_of(client, namespace)
    await set_pod_state(client, pod, "Running", ready=True)

    async def status() -> apps_pb2.ReplicaSetStatus:
        return (await client.get(apps_pb2.ReplicaSet, "web", namespace)).status

    async def ready_not_available() -> bool:
        s = await status()
        return s.ready_replicas == 1

    await eventually_async(ready_not_available)
    assert (await status()).available_replicas == 0  # ready for under 2 s

    async def available() -> bool:
        return (await status()).available_replicas == 1

    await eventually_async(available, timeout=10)


async def test_create_failures_are_reported_in_a_replica_failure_condition(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    manager = await start_manager(["replicaset"])
    await client.create(replicaset("web", namespace, 0))
    # A namespace being deleted refuses new objects, so every pod create fails from now on.
    await client.delete(core_pb2.Namespace, namespace)
    await client.patch(apps_pb2.ReplicaSet, "web", {"spec": {"replicas": 20}}, namespace)

    async def failed() -> bool:
        got = await client.get(apps_pb2.ReplicaSet, "web", namespace)
        return any(c.type == "ReplicaFailure" and "terminated" in c.message for c in got.status.conditions)

    await eventually_async(failed)
    assert manager.controllers[0].errors >= 1
    assert await pods_of(client, namespace) == []
