"""docs/controllers.md's pod GC: a pod bound to a Node that no longer exists is removed (grace 0, since no
agent is left to finish it), with a PodGC event; pods on existing nodes, and unbound pods, are left alone
(plausible bugs: the pods of a deleted node stuck Terminating forever; pods of a live node collected because
the informer had not seen its Node yet)."""

from __future__ import annotations

from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from tests.controllers.conftest import StartManager
from tests.controllers.test_endpoints_namespace_gc import gone
from tests.helpers import eventually_async
from tests.scheduler.conftest import StartHollow


def _pod(name: str, namespace: str, node: str) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, namespace
    pod.spec.containers.add(name="m", command=["true"])
    pod.spec.node_name = node
    return pod


async def test_pods_of_a_deleted_node_are_removed_and_others_kept(
    client: ApiClient, namespace: str, hollow: StartHollow, start_manager: StartManager
) -> None:
    nodes = await hollow(1)
    (live,) = nodes.names
    await client.create(_pod("on-live", namespace, live))
    await client.create(_pod("on-ghost", namespace, "no-such-node"))
    await client.create(_pod("unbound", namespace, ""))
    await start_manager(["podgc"])
    await eventually_async(lambda: gone(client, core_pb2.Pod, "on-ghost", namespace), timeout=20)
    assert not await gone(client, core_pb2.Pod, "on-live", namespace)
    assert not await gone(client, core_pb2.Pod, "unbound", namespace)

    async def reported() -> bool:  # events are recorded in the background
        events = (await client.list(core_pb2.Event, namespace)).items
        return any(e.reason == "PodGC" and e.involved_object.name == "on-ghost" for e in events)

    await eventually_async(reported, timeout=10)
