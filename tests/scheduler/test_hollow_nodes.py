"""Hollow nodes load the API server as real agents do: one pod watch per node by default (kubemark's model),
one shared watch only when asked; either way they report their pods Running."""

from __future__ import annotations

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient
from tests.helpers import eventually, eventually_async
from tests.scheduler.conftest import StartHollow


async def _runs_a_pod_on(client: ApiClient, namespace: str, node: str, name: str) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"nodeName": node, "containers": [{"name": "c", "command": ["sleep"]}]},
    }
    await client.create(from_manifest(doc))

    async def running() -> bool:
        return (await client.get(core_pb2.Pod, name, namespace)).status.phase == "Running"

    await eventually_async(running, timeout=20)


async def test_each_hollow_node_holds_its_own_pod_watch(
    cluster: ApiServer, client: ApiClient, hollow: StartHollow, namespace: str
) -> None:
    pods = cluster.caches["Pod"]
    before = pods.watcher_count
    nodes = await hollow(5)
    await eventually(lambda: pods.watcher_count >= before + 5)
    for i, node in enumerate(sorted(nodes.names)):
        await _runs_a_pod_on(client, namespace, node, f"p{i}")


async def test_the_shared_mode_holds_one_watch_for_all(
    cluster: ApiServer, client: ApiClient, hollow: StartHollow, namespace: str
) -> None:
    pods = cluster.caches["Pod"]
    before = pods.watcher_count
    nodes = await hollow(5, shared_watch=True)
    await _runs_a_pod_on(client, namespace, sorted(nodes.names)[0], "shared-0")
    assert pods.watcher_count == before + 1
