"""Deployments, DaemonSets, Jobs and namespaces end to end: real agents run real processes, the real
scheduler and controller manager drive them. Process counts are read from the host (pgrep)."""

from __future__ import annotations

import os
import random
import signal
from typing import Any

from controlplane.api.errors import NotFoundError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import apps_pb2, batch_pb2, core_pb2
from controlplane.client.client import ApiClient
from controlplane.controllers.podcontrol import pod_is_ready
from tests.cli.conftest import Cli
from tests.controllers.test_deployment import PodHistory
from tests.e2e.conftest import eventually_async
from tests.e2e.workloads.conftest import StartAgents, processes, wait_processes
from tests.helpers import change


def marker() -> str:
    """A command line no other test runs: ``sleep <unique seconds>``."""
    return f"sleep {random.randint(100_000, 999_999)}"


def deployment(name: str, namespace: str, replicas: int, command: str, version: str = "1", **spec: Any) -> Any:
    return from_manifest(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "terminationGracePeriodSeconds": 2,
                        "containers": [
                            {"name": "main", "command": command.split(), "env": [{"name": "V", "value": version}]}
                        ],
                    },
                },
                **spec,
            },
        }
    )


async def running_pods(client: ApiClient, namespace: str) -> list[core_pb2.Pod]:
    pods = (await client.list(core_pb2.Pod, namespace)).items
    return [p for p in pods if not p.metadata.HasField("deletion_timestamp") and p.status.phase == "Running"]


async def test_deployment_runs_scales_rolls_out_and_undoes(
    client: ApiClient, namespace: str, agents: StartAgents, cli: Cli
) -> None:
    await agents(3)
    v1, v2 = marker(), marker()
    await client.create(
        deployment("web", namespace, 3, v1, strategy={"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    )
    await wait_processes(v1, 3)
    await client.patch(apps_pb2.Deployment, "web", {"spec": {"replicas": 5}}, namespace)
    await wait_processes(v1, 5)
    await client.patch(apps_pb2.Deployment, "web", {"spec": {"replicas": 2}}, namespace)
    await wait_processes(v1, 2)

    async def rolled_out(version: str, count: int) -> bool:
        d = await client.get(apps_pb2.Deployment, "web", namespace)
        pods = await running_pods(client, namespace)
        return (
            d.status.updated_replicas == count == d.status.available_replicas == d.status.replicas
            and len(pods) == count
            and all(p.spec.containers[0].env[0].value == version and pod_is_ready(p) for p in pods)
        )

    await eventually_async(lambda: rolled_out("1", 2), timeout=30)
    async with PodHistory(client, namespace).running() as history:
        history.samples.clear()

        def new_version(d: apps_pb2.Deployment) -> None:
            d.spec.template.spec.containers[0].command[:] = v2.split()
            d.spec.template.spec.containers[0].env[0].value = "2"

        await change(client, apps_pb2.Deployment, "web", namespace, new_version)
        await eventually_async(lambda: rolled_out("2", 2), timeout=60)
    await wait_processes(v2, 2)
    await wait_processes(v1, 0)
    assert max(total for total, _, _ in history.samples) <= 3, "maxSurge 1 over 2 replicas"
    assert min(ready for _, ready, _ in history.samples) >= 2, "maxUnavailable 0"

    result = await cli("rollout", "undo", "deployment", "web", "-n", namespace)
    assert result.code == 0, result.err
    await eventually_async(lambda: rolled_out("1", 2), timeout=60)
    await wait_processes(v1, 2)
    await wait_processes(v2, 0)
    status = await cli("rollout", "status", "deployment", "web", "-n", namespace, "--timeout", "30")
    assert status.code == 0 and "successfully rolled out" in status.out


async def test_killed_process_restarts_and_deleted_pod_is_replaced(
    client: ApiClient, namespace: str, agents: StartAgents
) -> None:
    await agents(2)
    cmd = marker()
    await client.create(deployment("web", namespace, 2, cmd))
    first, _ = await wait_processes(cmd, 2)
    os.kill(first, signal.SIGKILL)

    async def restarted() -> bool:
        pods = await running_pods(client, namespace)
        return any(c.restart_count >= 1 for p in pods for c in p.status.container_statuses) and len(processes(cmd)) == 2

    await eventually_async(restarted, timeout=30)
    victim = (await running_pods(client, namespace))[0]
    await client.delete(core_pb2.Pod, victim.metadata.name, namespace)

    async def replaced() -> bool:
        pods = await running_pods(client, namespace)
        return len(pods) == 2 and victim.metadata.name not in {p.metadata.name for p in pods}

    await eventually_async(replaced, timeout=30)
    await wait_processes(cmd, 2)


async def test_stopped_agent_pods_move_and_its_stale_processes_stop_when_it_returns(
    client: ApiClient, namespace: str, agents: StartAgents
) -> None:
    started = await agents(3)
    cmd = marker()
    await client.create(deployment("web", namespace, 3, cmd))
    await wait_processes(cmd, 3)

    async def spread() -> bool:
        return len({p.spec.node_name for p in await running_pods(client, namespace)}) == 3

    await eventually_async(spread, timeout=30)
    lost = started[0]
    lost.kill(signal.SIGKILL)  # the agent dies; its workload processes keep running
    lost_pods = {p.metadata.name for p in await running_pods(client, namespace) if p.spec.node_name == lost.node}

    async def replaced_elsewhere() -> bool:
        pods = await running_pods(client, namespace)
        return len(pods) == 3 and all(p.spec.node_name != lost.node for p in pods)

    # node-monitor-grace-period 4 s + toleration 2 s, then a replacement starts on another node.
    await eventually_async(replaced_elsewhere, timeout=60)
    await wait_processes(cmd, 4, timeout=10)  # the lost node's process still runs while its agent is away
    lost.start()
    await wait_processes(cmd, 3, timeout=60)

    async def old_pods_gone() -> bool:
        names = {p.metadata.name for p in (await client.list(core_pb2.Pod, namespace)).items}
        return not (names & lost_pods)

    await eventually_async(old_pods_gone, timeout=30)
    assert len(await running_pods(client, namespace)) == 3


async def test_daemonset_follows_agents_joining_and_leaving(
    client: ApiClient, namespace: str, agents: StartAgents
) -> None:
    first = await agents(2)
    cmd = marker()
    await client.create(
        from_manifest(
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": "per-node", "namespace": namespace},
                "spec": {
                    "selector": {"matchLabels": {"app": "per-node"}},
                    "template": {
                        "metadata": {"labels": {"app": "per-node"}},
                        "spec": {"containers": [{"name": "main", "command": cmd.split()}]},
                    },
                },
            }
        )
    )
    await wait_processes(cmd, 2)
    await agents(1)
    await wait_processes(cmd, 3)
    leaving = first[0]
    for p in await running_pods(client, namespace):  # drain the node, then take it out of the cluster
        if p.spec.node_name == leaving.node:
            await client.delete(core_pb2.Pod, p.metadata.name, namespace)
    await change(
        client, core_pb2.Node, leaving.node, "", lambda n: n.spec.taints.add(key="retiring", effect="NoExecute")
    )
    await wait_processes(cmd, 2)
    leaving.kill(signal.SIGTERM)
    await client.delete(core_pb2.Node, leaving.node)

    async def follows() -> bool:
        ds = await client.get(apps_pb2.DaemonSet, "per-node", namespace)
        pods = await running_pods(client, namespace)
        return ds.status.desired_number_scheduled == 2 == ds.status.number_ready and len(pods) == 2

    await eventually_async(follows, timeout=30)


async def test_job_with_failures_honours_backoff_limit_and_a_good_job_completes(
    client: ApiClient, namespace: str, agents: StartAgents
) -> None:
    await agents(2)

    def job(name: str, command: list[str], **spec: Any) -> Any:
        return from_manifest(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "template": {
                        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "command": command}]}
                    },
                    **spec,
                },
            }
        )

    await client.create(job("bad", ["sh", "-c", "exit 3"], backoffLimit=2))
    await client.create(job("good", ["true"], completions=3, parallelism=2))

    async def finished(name: str, type_: str) -> bool:
        j = await client.get(batch_pb2.Job, name, namespace)
        return any(c.type == type_ and c.status == "True" for c in j.status.conditions)

    await eventually_async(lambda: finished("bad", "Failed"), timeout=60)
    await eventually_async(lambda: finished("good", "Complete"), timeout=60)
    bad = await client.get(batch_pb2.Job, "bad", namespace)
    assert bad.status.failed == 3 and any(c.reason == "BackoffLimitExceeded" for c in bad.status.conditions)
    good = await client.get(batch_pb2.Job, "good", namespace)
    assert good.status.succeeded == 3
    pods = (await client.list(core_pb2.Pod, namespace)).items
    assert sum(1 for p in pods if p.metadata.labels.get("job-name") == "bad") == 3


async def test_deleting_a_namespace_stops_all_its_processes(
    client: ApiClient, namespace: str, agents: StartAgents
) -> None:
    await agents(2)
    cmd = marker()
    await client.create(deployment("web", namespace, 3, cmd))
    await wait_processes(cmd, 3)
    await client.delete(core_pb2.Namespace, namespace)
    await wait_processes(cmd, 0, timeout=60)

    async def gone() -> bool:
        try:
            await client.get(core_pb2.Namespace, namespace)
        except NotFoundError:
            return True
        return False

    await eventually_async(gone, timeout=60)
