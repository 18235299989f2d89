"""Endpoints, Namespace and garbage-collector controllers against a real API server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.api.errors import NotFoundError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.client.client import ApiClient
from tests.controllers.conftest import StartManager, pods_of, set_pod_state
from tests.helpers import eventually_async


def pod(name: str, namespace: str, labels: dict[str, str], ports: list[dict[str, Any]] | None = None) -> core_pb2.Pod:
    return from_manifest(  # type: ignore[return-value]
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "main", "command": ["sleep", "3600"], "ports": ports or []}]},
        }
    )


async def gone(client: ApiClient, kind: Any, name: str, namespace: str = "") -> bool:
    try:
        await client.get(kind, name, namespace)
    except NotFoundError:
        return True
    return False


async def test_endpoints_list_ready_and_not_ready_addresses_by_port(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["endpoints"])
    await client.create(
        from_manifest(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {
                    "selector": {"app": "web"},
                    "ports": [
                        {"name": "http", "port": 80, "targetPort": "http"},
                        {"name": "admin", "port": 81, "targetPort": 9001},
                    ],
                },
            }
        )
    )
    a = await client.create(pod("a", namespace, {"app": "web"}, [{"name": "http", "containerPort": 8080}]))
    b = await client.create(pod("b", namespace, {"app": "web"}, [{"name": "http", "containerPort": 8080}]))
    await client.create(pod("other", namespace, {"app": "db"}))
    await set_pod_state(client, a, "Running", ready=True, node="127.0.0.2")
    await set_pod_state(client, b, "Running", ready=False, node="127.0.0.3")

    async def listed() -> bool:
        try:
            ep = await client.get(core_pb2.Endpoints, "web", namespace)
        except NotFoundError:
            return False
        if len(ep.subsets) != 1:
            return False
        s = ep.subsets[0]
        return (
            [x.ip for x in s.addresses] == ["127.0.0.2"]
            and [x.ip for x in s.not_ready_addresses] == ["127.0.0.3"]
            and sorted((p.name, p.port) for p in s.ports) == [("admin", 9001), ("http", 8080)]
        )

    await eventually_async(listed)
    await set_pod_state(client, b, "Running", ready=True, node="127.0.0.3")

    async def both_ready() -> bool:
        ep = await client.get(core_pb2.Endpoints, "web", namespace)
        return len(ep.subsets) == 1 and sorted(x.ip for x in ep.subsets[0].addresses) == ["127.0.0.2", "127.0.0.3"]

    await eventually_async(both_ready, timeout=5)
    await client.delete(core_pb2.Service, "web", namespace)
    await eventually_async(lambda: gone(client, core_pb2.Endpoints, "web", namespace))


async def test_deleting_a_namespace_deletes_everything_in_it_then_the_namespace(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["namespace"])
    await client.create(pod("a", namespace, {"app": "x"}))
    await client.create(
        from_manifest({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": namespace}})
    )
    await client.delete(core_pb2.Namespace, namespace)
    ns = await client.get(core_pb2.Namespace, namespace)
    assert ns.status.phase == "Terminating"
    with pytest.raises(Exception, match="being terminated"):
        await client.create(pod("late", namespace, {}))
    await eventually_async(lambda: gone(client, core_pb2.Namespace, namespace), timeout=20)
    assert await pods_of(client, namespace, active_only=False) == []


def owned_rs(name: str, namespace: str) -> apps_pb2.ReplicaSet:
    return from_manifest(  # type: ignore[return-value]
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "main", "command": ["sleep", "3600"]}]},
                },
            },
        }
    )


@pytest.mark.parametrize("policy", ["Background", "Foreground", "Orphan"])
async def test_deleting_an_owner_follows_its_propagation_policy(
    client: ApiClient, namespace: str, start_manager: StartManager, policy: str
) -> None:
    await start_manager(["replicaset", "garbagecollector"])
    await client.create(owned_rs("web", namespace))

    async def two() -> bool:
        return len(await pods_of(client, namespace)) == 2

    await eventually_async(two)
    _, removed = await client.delete(apps_pb2.ReplicaSet, "web", namespace, propagation_policy=policy)
    if policy == "Foreground":
        assert not removed, "a foreground delete keeps the owner until its dependents are gone"
    await eventually_async(lambda: gone(client, apps_pb2.ReplicaSet, "web", namespace))
    if policy == "Orphan":
        pods = await pods_of(client, namespace)
        assert len(pods) == 2 and all(not p.metadata.owner_references for p in pods)
    else:

        async def no_pods() -> bool:
            return await pods_of(client, namespace, active_only=False) == []

        await eventually_async(no_pods)


async def test_dependents_of_an_owner_that_no_longer_exists_are_collected(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    doc = pod("stray", namespace, {})
    doc.metadata.owner_references.add(
        api_version="apps/v1", kind="ReplicaSet", name="ghost", uid="0000-gone", controller=True
    )
    await client.create(doc)
    keep = pod("kept", namespace, {})
    cm = await client.create(
        from_manifest({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "o", "namespace": namespace}})
    )
    keep.metadata.owner_references.add(api_version="v1", kind="ConfigMap", name="o", uid=cm.metadata.uid)
    await client.create(keep)
    await start_manager(["garbagecollector"])
    await eventually_async(lambda: gone(client, core_pb2.Pod, "stray", namespace))
    assert not await gone(client, core_pb2.Pod, "kept", namespace)


async def test_objects_owned_by_kinds_this_cluster_does_not_serve_are_left_alone(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    # An operator's own controller may own Navarch objects through kinds Navarch does not serve (or a
    # kind of the same name in another API group): nothing here can tell whether such an owner exists.
    owners = {
        "widget-owned": ("example.com/v1", "Widget"),
        "foreign-replicaset": ("example.com/v1", "ReplicaSet"),
    }
    for name, (api_version, kind) in owners.items():
        doc = pod(name, namespace, {})
        doc.metadata.owner_references.add(api_version=api_version, kind=kind, name="x", uid=f"uid-{name}")
        await client.create(doc)
    control = pod("stray", namespace, {})
    control.metadata.owner_references.add(api_version="apps/v1", kind="ReplicaSet", name="ghost", uid="0000-gone")
    await client.create(control)
    await start_manager(["garbagecollector"])
    await eventually_async(lambda: gone(client, core_pb2.Pod, "stray", namespace))  # the collector ran
    await asyncio.sleep(2)  # and had time to get to the others (same queue, 5 workers)
    for name in owners:
        assert not await gone(client, core_pb2.Pod, name, namespace), f"{name} was collected"
