"""The plugin cases again, end to end: real API server, hollow nodes shaped like each case's nodes, pods
bound where the case says, and the real scheduler (only the plugin under test enabled) placing the pod."""

from __future__ import annotations

import uuid

import pytest

from controlplane.api.pb import core_pb2
from controlplane.api.volumes import LOCAL_STORAGE, SELECTED_NODE
from controlplane.client.client import ApiClient
from controlplane.scheduler.framework import node_allocatable
from controlplane.scheduler.plugins import FILTERS
from tests.e2e.conftest import eventually_async
from tests.scheduler.conftest import StartHollow, StartScheduler
from tests.scheduler.test_plugins import CASES, Case


def _capacity(node: core_pb2.Node) -> dict[str, str]:
    a = node_allocatable(node)
    out = {"cpu": f"{a.cpu}m", "memory": str(a.memory), "pods": str(a.pods)}
    if LOCAL_STORAGE in node.status.allocatable:
        out[LOCAL_STORAGE] = node.status.allocatable[LOCAL_STORAGE]
    return out


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_plugin_places_the_pod_in_a_real_cluster(
    case: Case, client: ApiClient, hollow: StartHollow, start_scheduler: StartScheduler, namespace: str
) -> None:
    names: dict[str, str] = {}  # case node name -> hollow node name
    for n in case.nodes:
        taints = [(t.key, t.value, t.effect) for t in n.spec.taints]
        group = await hollow(1, capacity=_capacity(n), labels=dict(n.metadata.labels), taints=taints)
        real = next(iter(group.names))
        names[n.metadata.name] = real
        ready = next(c.status for c in n.status.conditions if c.type == "Ready")
        if n.spec.unschedulable:
            await client.patch(core_pb2.Node, real, {"spec": {"unschedulable": True}})
        if ready != "True":
            # Hollow nodes write their (healthy) conditions only when they change or once a minute.
            conditions = {"status": {"conditions": [{"type": "Ready", "status": ready}]}}
            await client.patch(core_pb2.Node, real, conditions, status=True)
    for case_node, pods in case.running.items():
        for p in pods:
            placed = core_pb2.Pod()
            placed.CopyFrom(p)
            placed.metadata.namespace = namespace
            placed.metadata.name = f"{p.metadata.name}-{uuid.uuid4().hex[:4]}"
            placed.metadata.ClearField("uid")
            placed.spec.node_name = names[case_node]
            await client.create(placed)
    # Claims and volumes, renamed for this cluster (volumes are cluster-wide) and pointed at the real nodes.
    suffix = uuid.uuid4().hex[:6]
    for v in case.volumes:
        pv = core_pb2.PersistentVolume()
        pv.CopyFrom(v)
        pv.metadata.name = pv.spec.local.path = f"{v.metadata.name}-{suffix}"
        for term in pv.spec.node_affinity.required.node_selector_terms:
            for f in term.match_fields:
                f.values[:] = [names[x] for x in f.values]
        await client.create(pv)
    for c in case.claims:
        pvc = core_pb2.PersistentVolumeClaim()
        pvc.CopyFrom(c)
        pvc.metadata.namespace = namespace
        if pvc.spec.volume_name:
            pvc.spec.volume_name = f"{pvc.spec.volume_name}-{suffix}"
        created = await client.create(pvc)
        if created.spec.volume_name:  # as the volume controller would: the claim says Bound
            created.status.phase = "Bound"
            await client.update_status(created)
    scheduler_name = f"c-{uuid.uuid4().hex[:6]}"
    if case.plugin in FILTERS:
        config = {"filters": (case.plugin,), "weights": {"LeastAllocated": 1}}
    else:
        config = {"filters": (), "weights": {case.plugin: 1}}
    incoming = core_pb2.Pod()
    incoming.CopyFrom(case.incoming)
    incoming.metadata.namespace = namespace
    incoming.metadata.ClearField("uid")
    incoming.spec.scheduler_name = scheduler_name
    await client.create(incoming)
    # Started after the cluster is set up: its first list already holds every node and placed pod.
    await start_scheduler(scheduler_name, percentage_of_nodes_to_score=100, **config)
    name = incoming.metadata.name
    if case.expect is None:

        async def refused() -> bool:
            p = await client.get(core_pb2.Pod, name, namespace)
            return any(c.type == "PodScheduled" and c.status == "False" for c in p.status.conditions)

        await eventually_async(refused, timeout=15)
        p = await client.get(core_pb2.Pod, name, namespace)
        assert not p.spec.node_name
        if case.message:
            message = next(c.message for c in p.status.conditions if c.type == "PodScheduled")
            assert message == case.message
        return

    if any(not c.spec.volume_name for c in case.claims):
        # A new local volume: the scheduler chooses its node in the claim (no volume controller runs here to
        # provision it, so the pod itself stays unbound).
        async def chosen() -> bool:
            pvc = await client.get(core_pb2.PersistentVolumeClaim, case.claims[0].metadata.name, namespace)
            return pvc.metadata.annotations.get(SELECTED_NODE) == names[case.expect]  # type: ignore[index]

        await eventually_async(chosen, timeout=15)
        return

    async def bound() -> bool:
        return bool((await client.get(core_pb2.Pod, name, namespace)).spec.node_name)

    await eventually_async(bound, timeout=15)
    p = await client.get(core_pb2.Pod, name, namespace)
    assert p.spec.node_name == names[case.expect]
