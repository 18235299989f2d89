"""The agent survives its own restart: workloads keep running and are adopted; what was deleted meanwhile stops."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

from controlplane.api.errors import NotFoundError
from controlplane.api.pb import coordination_pb2, core_pb2
from controlplane.client.client import ApiClient
from nodeagent.supervisor import process_start_time
from tests.e2e.conftest import AgentProcess, StartAgent, eventually_async, pod_manifest, wait_pod


def _running(p: core_pb2.Pod) -> bool:
    return p.status.phase == "Running" and all(s.state.HasField("running") for s in p.status.container_statuses)


def _workload(agent: AgentProcess, pod: core_pb2.Pod) -> tuple[int, int | None]:
    """The workload's pid and start time, from what its shim recorded."""
    started = agent.data_dir / "pods" / pod.metadata.uid / "containers" / "main" / "started.json"
    pid = int(json.loads(started.read_text())["pid"])
    return pid, process_start_time(pid)


async def _true(value: bool) -> bool:
    return value


async def test_a_restarted_agent_adopts_its_workloads_and_stops_what_was_deleted(
    client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    pods = {}
    for name in ("keep", "forced", "graceful"):
        pods[name] = await client.create(pod_manifest(name, namespace, agent.node, ["sleep", "600"]))
    for name in pods:
        await wait_pod(client, namespace, name, _running)
    before = {name: _workload(agent, pod) for name, pod in pods.items()}
    assert all(start is not None for _, start in before.values())
    kept = await client.get(core_pb2.Pod, "keep", namespace)

    agent.kill(signal.SIGKILL)
    for pid, start in before.values():
        assert process_start_time(pid) == start  # the workloads do not notice the agent dying
    await client.delete(core_pb2.Pod, "forced", namespace, grace_period_seconds=0)
    _, gone = await client.delete(core_pb2.Pod, "graceful", namespace, grace_period_seconds=5)
    assert not gone  # only an agent finishes a graceful deletion

    agent.start()
    forced_pid, forced_start = before["forced"]
    graceful_pid, graceful_start = before["graceful"]
    await eventually_async(lambda: _true(process_start_time(forced_pid) != forced_start), timeout=30)
    await eventually_async(lambda: _true(process_start_time(graceful_pid) != graceful_start), timeout=30)

    async def graceful_gone() -> bool:
        listed = await client.list(core_pb2.Pod, namespace, field_selector="metadata.name=graceful")
        return not listed.items

    await eventually_async(graceful_gone, timeout=30)
    assert not (agent.data_dir / "pods" / pods["forced"].metadata.uid).exists()
    # The kept pod: the same process, still Running, no restart counted, its start time unchanged.
    keep_pid, keep_start = before["keep"]
    assert process_start_time(keep_pid) == keep_start
    after = await wait_pod(client, namespace, "keep", _running)
    status = after.status.container_statuses[0]
    assert status.restart_count == 0
    assert status.state.running.started_at == kept.status.container_statuses[0].state.running.started_at
    assert "adopted container main" in agent.log_text()


async def test_stopping_the_agent_leaves_workloads_running_unless_draining(
    client: ApiClient, start_agent: StartAgent, namespace: str
) -> None:
    plain = await start_agent()
    draining = await start_agent("--drain-on-exit")
    a = await client.create(pod_manifest("stays", namespace, plain.node, ["sleep", "600"]))
    b = await client.create(
        pod_manifest("drained", namespace, draining.node, ["sleep", "600"], terminationGracePeriodSeconds=2)
    )
    await wait_pod(client, namespace, "stays", _running)
    await wait_pod(client, namespace, "drained", _running)
    stays, drained = _workload(plain, a), _workload(draining, b)
    # The API server runs in this process: wait for the agents in threads so that it keeps serving them.
    await asyncio.gather(
        asyncio.to_thread(plain.kill, signal.SIGTERM), asyncio.to_thread(draining.kill, signal.SIGTERM)
    )
    assert process_start_time(stays[0]) == stays[1]
    assert Path(plain.data_dir / "pods" / a.metadata.uid).exists()
    assert process_start_time(drained[0]) != drained[1]
    # A drained pod is not deleted: it is reported Failed, so that its controller replaces it.
    after = await client.get(core_pb2.Pod, "drained", namespace)
    assert after.status.phase == "Failed" and after.status.reason == "Terminated"
    assert after.status.container_statuses[0].state.terminated.signal == signal.SIGTERM


async def test_a_node_without_heartbeat_shows_a_stale_lease(client: ApiClient, start_agent: StartAgent) -> None:
    a = await start_agent("--lease-interval", "0.2", "--lease-duration", "2")

    def renewed(lease: coordination_pb2.Lease) -> float:
        return lease.spec.renew_time.ToNanoseconds() / 1e9

    # The agent writes its first Lease right after registering its Node (which start_agent waited for).
    leases: list[coordination_pb2.Lease] = []

    async def has_lease() -> bool:
        try:
            leases.append(await client.get(coordination_pb2.Lease, a.node, "navarch-node-lease"))
        except NotFoundError:
            return False
        return True

    await eventually_async(has_lease, timeout=10)
    first = leases[-1]
    assert first.spec.holder_identity == a.node and first.spec.lease_duration_seconds == 2

    async def advanced() -> bool:
        lease = await client.get(coordination_pb2.Lease, a.node, "navarch-node-lease")
        return renewed(lease) > renewed(first)

    await eventually_async(advanced, timeout=10)
    a.kill(signal.SIGKILL)
    last = await client.get(coordination_pb2.Lease, a.node, "navarch-node-lease")

    async def stale() -> bool:
        # Stale: renewTime + leaseDurationSeconds is in the past (what the node-lifecycle controller acts on).
        return time.time() > renewed(last) + last.spec.lease_duration_seconds

    await eventually_async(stale, timeout=10)
    again = await client.get(coordination_pb2.Lease, a.node, "navarch-node-lease")
    assert renewed(again) == renewed(last)


async def test_restart_counts_survive_an_agent_restart(client: ApiClient, agent: AgentProcess, namespace: str) -> None:
    """docs/agent.md: restart counts live in the agent's state, so a restarted agent goes on counting
    (plausible bug: the count starts again from 0, hiding a crash loop after every agent upgrade)."""
    await client.create(pod_manifest("crashes", namespace, agent.node, ["sh", "-c", "sleep 0.2; exit 1"]))
    crashing = await wait_pod(
        client, namespace, "crashes", lambda p: p.status.container_statuses[0].restart_count >= 2, timeout=60
    )
    counted = crashing.status.container_statuses[0].restart_count
    agent.kill(signal.SIGKILL)
    agent.start()
    seen: list[int] = []

    async def counted_on() -> bool:
        p = await client.get(core_pb2.Pod, "crashes", namespace)
        seen.append(p.status.container_statuses[0].restart_count)
        return seen[-1] > counted

    await eventually_async(counted_on, timeout=60)
    assert min(seen) >= counted, f"the count went back: {counted} before the restart, then {seen}"
