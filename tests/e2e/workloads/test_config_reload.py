"""reloadPolicy end to end, one test per mode, with real agents, processes and the controller manager:

- Signal: the process is sent SIGHUP once the new ConfigMap content is in its volume (it records what it
  reads then) and keeps running (plausible bug: signalled before the file changed, or restarted instead);
- Restart: the container restarts with the new environment value, although its restartPolicy is Never
  (plausible bug: the restart policy or CrashLoopBackOff applied to a reload);
- Rollout: the Deployment rolls to new pods that see the new value, never dropping below
  replicas - maxUnavailable Ready pods, and creating the Deployment did not roll it (plausible bugs: the
  first fingerprint written into the template, rolling every new Deployment; pods replaced all at once).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from controlplane.api.objects import from_manifest
from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.client.client import ApiClient
from controlplane.controllers.configrollout import ANNOTATION
from tests.e2e.conftest import eventually_async
from tests.e2e.workloads.conftest import StartAgents

GREETING = {"name": "cfg", "key": "greeting"}


def configmap(name: str, namespace: str, greeting: str) -> Any:
    return from_manifest(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"greeting": greeting},
        }
    )


def record() -> Path:
    path = Path(tempfile.mkdtemp()) / "record"
    path.parent.chmod(0o777)
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def restarts(client: ApiClient, namespace: str, name: str) -> int:
    pod = await client.get(core_pb2.Pod, name, namespace)
    return sum(c.restart_count for c in pod.status.container_statuses)


async def test_signal_mode_sends_sighup_after_the_new_content_is_in_place(
    client: ApiClient, namespace: str, agents: StartAgents
) -> None:
    (agent,) = await agents(1, "--volume-refresh", "1")
    out = record()
    await client.create(configmap("cfg", namespace, "hello"))
    script = (
        f"trap 'cat conf/greeting >> {out}; echo >> {out}' HUP; echo started >> {out}; while true; do sleep 0.2; done"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sig", "namespace": namespace},
        "spec": {
            "nodeName": agent.node,
            "volumes": [{"name": "conf", "configMap": {"name": "cfg"}}],
            "containers": [
                {
                    "name": "main",
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "conf", "mountPath": "/conf"}],
                    "reloadPolicy": {"mode": "Signal", "signal": "SIGHUP"},
                }
            ],
        },
    }
    await client.create(from_manifest(pod))
    await eventually_async(lambda: asyncio.sleep(0, result=lines(out) == ["started"]), timeout=30)
    await client.patch(core_pb2.ConfigMap, "cfg", {"data": {"greeting": "bonjour"}}, namespace)
    await eventually_async(lambda: asyncio.sleep(0, result="bonjour" in lines(out)), timeout=30)
    assert lines(out) == ["started", "bonjour"], "one signal, after the file held the new content"
    for _ in range(6):  # and it keeps running, not restarted
        assert await restarts(client, namespace, "sig") == 0
        await asyncio.sleep(0.5)
    events = {e.reason for e in (await client.list(core_pb2.Event, namespace)).items}
    assert "Reloaded" in events


async def test_restart_mode_restarts_with_the_new_environment_whatever_the_restart_policy(
    client: ApiClient, namespace: str, agents: StartAgents
) -> None:
    (agent,) = await agents(1, "--volume-refresh", "1")
    out = record()
    await client.create(configmap("cfg", namespace, "hello"))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "rst", "namespace": namespace},
        "spec": {
            "nodeName": agent.node,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "command": ["sh", "-c", f'echo "$GREETING" >> {out}; exec sleep 3600'],
                    "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}}],
                    "reloadPolicy": {"mode": "Restart"},
                }
            ],
        },
    }
    await client.create(from_manifest(pod))
    await eventually_async(lambda: asyncio.sleep(0, result=lines(out) == ["hello"]), timeout=30)
    await client.patch(core_pb2.ConfigMap, "cfg", {"data": {"greeting": "bonjour"}}, namespace)
    await eventually_async(lambda: asyncio.sleep(0, result=lines(out) == ["hello", "bonjour"]), timeout=30)

    async def restarted_once_and_running() -> bool:
        p = await client.get(core_pb2.Pod, "rst", namespace)
        st = p.status.container_statuses[0]
        return st.restart_count == 1 and st.state.HasField("running")

    await eventually_async(restarted_once_and_running, timeout=15)


async def test_rollout_mode_rolls_the_deployment_under_its_max_unavailable(
    client: ApiClient, namespace: str, agents: StartAgents
) -> None:
    await agents(2)
    outdir = Path(tempfile.mkdtemp())
    outdir.chmod(0o777)
    await client.create(configmap("cfg", namespace, "hello"))
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {
            "replicas": 3,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "selector": {"matchLabels": {"app": "roll"}},
            "template": {
                "metadata": {"labels": {"app": "roll"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "main",
                            "command": ["sh", "-c", f'echo "$GREETING" > {outdir}/$POD; exec sleep 3600'],
                            "env": [
                                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {
                                    "name": "GREETING",
                                    "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}},
                                },
                            ],
                            "reloadPolicy": {"mode": "Rollout"},
                        }
                    ],
                },
            },
        },
    }
    await client.create(from_manifest(deployment))

    async def ready_pods() -> list[core_pb2.Pod]:
        pods = (await client.list(core_pb2.Pod, namespace)).items
        return [
            p
            for p in pods
            if not p.metadata.HasField("deletion_timestamp")
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)
        ]

    async def three_ready() -> bool:
        return len(await ready_pods()) == 3

    await eventually_async(three_ready, timeout=60)

    async def fingerprint_recorded() -> bool:
        d = await client.get(apps_pb2.Deployment, "app", namespace)
        return ANNOTATION in d.metadata.annotations

    await eventually_async(fingerprint_recorded, timeout=30)
    first = {p.metadata.name for p in await ready_pods()}
    await asyncio.sleep(2)
    assert len((await client.list(apps_pb2.ReplicaSet, namespace)).items) == 1, "creating it rolled it"

    await client.patch(core_pb2.ConfigMap, "cfg", {"data": {"greeting": "bonjour"}}, namespace)
    lowest = 3

    async def rolled() -> bool:
        nonlocal lowest
        ready = await ready_pods()
        lowest = min(lowest, len(ready))
        names = {p.metadata.name for p in ready}
        return len(ready) == 3 and not names & first

    await eventually_async(rolled, timeout=90)
    assert lowest >= 2, f"only {lowest} Ready pods during the rollout (maxUnavailable 1 of 3)"
    for p in await ready_pods():
        assert (outdir / p.metadata.name).read_text().strip() == "bonjour"
    d = await client.get(apps_pb2.Deployment, "app", namespace)
    assert d.spec.template.metadata.annotations[ANNOTATION] == d.metadata.annotations[ANNOTATION]
