"""The scheduler against a real API server and hollow nodes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc

from controlplane import transport
from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2, meta_pb2, scheduler_pb2, scheduler_pb2_grpc
from controlplane.client.client import ApiClient
from controlplane.scheduler.scheduler import Scheduler
from controlplane.scheduler.service import SchedulerService
from tests.e2e.conftest import eventually_async
from tests.scheduler.conftest import StartHollow, StartScheduler


def pod(name: str, namespace: str, scheduler: str, cpu: str = "100m", **spec: Any) -> core_pb2.Pod:
    """A pod for the scheduler named ``scheduler``."""
    obj = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "schedulerName": scheduler,
                "containers": [{"name": "c", "command": ["x"], "resources": {"requests": {"cpu": cpu}}}],
                **spec,
            },
        }
    )
    assert isinstance(obj, core_pb2.Pod)
    return obj


async def wait_for(client: ApiClient, namespace: str, name: str, condition: Any, timeout: float = 20) -> core_pb2.Pod:
    """Poll a pod until ``condition(pod)``."""
    found: list[core_pb2.Pod] = []

    async def check() -> bool:
        p = await client.get(core_pb2.Pod, name, namespace)
        if condition(p):
            found.append(p)
            return True
        return False

    await eventually_async(check, timeout)
    return found[0]


def scheduled_condition(p: core_pb2.Pod) -> meta_pb2.Condition:
    """The pod's PodScheduled condition (an empty one if it has none)."""
    return next((c for c in p.status.conditions if c.type == "PodScheduled"), meta_pb2.Condition())


async def test_an_unschedulable_pod_says_why_and_runs_once_a_node_fits(
    client: ApiClient, hollow: StartHollow, start_scheduler: StartScheduler, namespace: str
) -> None:
    name = f"s-{uuid.uuid4().hex[:6]}"
    await hollow(2, capacity={"cpu": "1", "memory": "4Gi", "pods": "110"})
    await start_scheduler(name)
    created = await client.create(pod("big", namespace, name, cpu="2"))

    def unschedulable(p: core_pb2.Pod) -> bool:
        return scheduled_condition(p).status == "False"

    waiting = await wait_for(client, namespace, "big", unschedulable)
    cond = scheduled_condition(waiting)
    assert cond.reason == "Unschedulable"
    assert cond.message == "0/2 nodes are available: 2 Insufficient cpu."

    async def failed_event() -> bool:
        events = await client.list(
            core_pb2.Event, namespace, field_selector=f"involvedObject.uid={created.metadata.uid}"
        )
        return any(e.reason == "FailedScheduling" and "Insufficient cpu" in e.message for e in events.items)

    await eventually_async(failed_event, timeout=10)

    bigger = await hollow(1, capacity={"cpu": "4", "memory": "8Gi", "pods": "110"})
    running = await wait_for(client, namespace, "big", lambda p: p.status.phase == "Running", timeout=30)
    assert running.spec.node_name in bigger.names
    assert scheduled_condition(running).status == "True"


async def test_explain_agrees_with_the_decision(
    client: ApiClient, hollow: StartHollow, start_scheduler: StartScheduler, namespace: str
) -> None:
    name = f"s-{uuid.uuid4().hex[:6]}"
    nodes = await hollow(3)
    tainted = await hollow(1, taints=[("dedicated", "gpu", "NoSchedule")])
    # Load the nodes unevenly, so that the scores differ.
    await start_scheduler(name)
    for i in range(4):
        await client.create(pod(f"load-{i}", namespace, name, cpu="500m"))
    for i in range(4):
        await wait_for(client, namespace, f"load-{i}", lambda p: bool(p.spec.node_name))
    explain_name = f"x-{uuid.uuid4().hex[:6]}"
    idle = await start_scheduler(explain_name, schedule=False)
    await client.create(pod("candidate", namespace, explain_name, cpu="1"))

    async def cached() -> bool:
        return sum(len(n.pods) for n in idle.cache.nodes.values()) >= 4

    await eventually_async(cached, timeout=10)
    server = transport.make_server()
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(SchedulerService(idle, lambda: ("x", True)), server)
    port = transport.add_port(server, "127.0.0.1:0")
    await server.start()
    channel = transport.make_channel([f"127.0.0.1:{port}"])
    try:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        answer = await stub.Explain(scheduler_pb2.ExplainRequest(namespace=namespace, name="candidate"))
        verdicts = {v.node: v for v in answer.nodes}
        gpu = verdicts[next(iter(tainted.names))]
        assert not gpu.feasible and gpu.filter == "TaintToleration"
        assert list(gpu.reasons) == ["node(s) had untolerated taint {dedicated: gpu}"]
        feasible = {n for n, v in verdicts.items() if v.feasible}
        assert feasible >= nodes.names
        assert answer.selected in nodes.names
        assert verdicts[answer.selected].score == max(v.score for v in verdicts.values() if v.feasible)
        try:
            await stub.Explain(scheduler_pb2.ExplainRequest(namespace=namespace, name="nope"))
            raise AssertionError("Explain of a missing pod succeeded")
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND and "nope" in (err.details() or "")
    finally:
        await channel.close()
        await server.stop(0)
    # Now let it schedule for real: the same node.
    await start_scheduler(explain_name)
    bound = await wait_for(client, namespace, "candidate", lambda p: bool(p.spec.node_name))
    assert bound.spec.node_name == answer.selected


async def test_pods_for_another_scheduler_are_left_alone(
    client: ApiClient, hollow: StartHollow, start_scheduler: StartScheduler, namespace: str
) -> None:
    name = f"s-{uuid.uuid4().hex[:6]}"
    await hollow(1)
    scheduler = await start_scheduler(name)
    await client.create(pod("theirs", namespace, "someone-else"))
    await client.create(pod("ours", namespace, name))
    await wait_for(client, namespace, "ours", lambda p: bool(p.spec.node_name))
    theirs = await client.get(core_pb2.Pod, "theirs", namespace)
    assert not theirs.spec.node_name and not theirs.status.conditions
    assert scheduler.attempts.total == 1


async def test_a_binding_that_loses_a_race_is_forgotten_and_the_pod_retried(
    client: ApiClient, hollow: StartHollow, start_scheduler: StartScheduler, namespace: str
) -> None:
    name = f"s-{uuid.uuid4().hex[:6]}"
    await hollow(1)
    scheduler = await start_scheduler(name, schedule=False)
    created = await client.create(pod("raced", namespace, name))
    await eventually_async(lambda: _queued(scheduler, created.metadata.uid), timeout=10)
    qp = await scheduler.queue.pop(timeout=5)
    assert qp is not None and qp.uid == created.metadata.uid
    # Someone changes the pod after the scheduler took it, and the scheduler acts on the version it saw
    # (as a second replica racing it would): its binding, guarded by that resourceVersion, must fail.
    stale = core_pb2.Pod()
    stale.CopyFrom(qp.pod)
    live = await client.get(core_pb2.Pod, "raced", namespace)
    live.metadata.labels["touched"] = "yes"
    changed = await client.update(live)

    async def informer_has_it() -> bool:
        cached = scheduler.pods.store.get_by_name(namespace, "raced")
        return cached is not None and cached.metadata.resource_version == changed.metadata.resource_version

    await eventually_async(informer_has_it, timeout=10)
    qp.pod = stale
    binder = asyncio.create_task(scheduler.binder.run())
    try:
        scheduler.schedule_one(qp)
        assert scheduler.cache.node_of(qp.uid) is not None  # assumed at once
        # The failed binding is forgotten.
        await eventually_async(lambda: _forgotten(scheduler, qp.uid), timeout=10)
    finally:
        binder.cancel()
    assert not (await client.get(core_pb2.Pod, "raced", namespace)).spec.node_name
    again = await scheduler.queue.pop(timeout=5)
    assert again is not None and again.uid == qp.uid and again.pod.metadata.labels["touched"] == "yes"


async def _forgotten(scheduler: Scheduler, uid: str) -> bool:
    return scheduler.cache.node_of(uid) is None


async def _queued(scheduler: Scheduler, uid: str) -> bool:
    return uid in scheduler.queue
