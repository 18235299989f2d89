"""StatefulSets end to end on real agents and processes, with the real scheduler and controller manager:
three ordinals, each writing its name into its own node-local volume; a deleted pod and a restarted agent
bring ``web-1`` back on the same node with its file intact; a rolling update with ``partition: 2`` changes
only ``web-2``; scaling down keeps the claims (``whenScaled: Retain``) or deletes them (``Delete``), and a
deleted claim's volume and directory go with it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from controlplane.api.objects import from_manifest
from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.client.client import ApiClient
from controlplane.controllers.podcontrol import pod_is_ready
from tests.e2e.conftest import AgentProcess, eventually_async
from tests.e2e.workloads.conftest import StartAgents


def statefulset(name: str, namespace: str, replicas: int, when_scaled: str = "Retain", version: str = "1") -> Any:
    return from_manifest(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "serviceName": name,
                "selector": {"matchLabels": {"app": name}},
                "persistentVolumeClaimRetentionPolicy": {"whenScaled": when_scaled},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "c",
                                "command": ["sh", "-c", 'echo "$HOSTNAME v$V" >> data/log; exec sleep 3600'],
                                "env": [{"name": "V", "value": version}],
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "storageClassName": "local",
                            "resources": {"requests": {"storage": "10Mi"}},
                        },
                    }
                ],
            },
        }
    )


async def pods_by_name(client: ApiClient, namespace: str) -> dict[str, core_pb2.Pod]:
    pods = (await client.list(core_pb2.Pod, namespace)).items
    return {p.metadata.name: p for p in pods if not p.metadata.HasField("deletion_timestamp")}


async def all_ready(client: ApiClient, namespace: str, names: set[str]) -> bool:
    pods = await pods_by_name(client, namespace)
    return set(pods) == names and all(pod_is_ready(p) and p.status.phase == "Running" for p in pods.values())


async def volume_file(client: ApiClient, agents: dict[str, AgentProcess], namespace: str, claim: str) -> str:
    pvc = await client.get(core_pb2.PersistentVolumeClaim, claim, namespace)
    pv = await client.get(core_pb2.PersistentVolume, pvc.spec.volume_name)
    node = pv.spec.node_affinity.required.node_selector_terms[0].match_fields[0].values[0]
    path = agents[node].data_dir / "local-volumes" / pv.spec.local.path / "log"
    return path.read_text() if path.exists() else ""


async def test_statefulset_identity_storage_partitioned_update_and_retention(
    client: ApiClient, namespace: str, agents: StartAgents
) -> None:
    started = await agents(2)
    by_node = {a.node: a for a in started}
    await client.create(statefulset("web", namespace, 3))
    names = {"web-0", "web-1", "web-2"}
    await eventually_async(lambda: all_ready(client, namespace, names), timeout=90)
    pods = await pods_by_name(client, namespace)
    # OrderedReady: each ordinal was created only after the one before it was Ready.
    for lower, higher in (("web-0", "web-1"), ("web-1", "web-2")):
        ready_at = next(c for c in pods[lower].status.conditions if c.type == "Ready").last_transition_time
        assert pods[higher].metadata.creation_timestamp.ToDatetime() >= ready_at.ToDatetime()
    for i in range(3):
        text = await volume_file(client, by_node, namespace, f"data-web-{i}")
        assert text == f"web-{i} v1\n"

    # Delete web-1 and restart its agent: it comes back on the same node, and its data is still there.
    node = pods["web-1"].spec.node_name
    await client.delete(core_pb2.Pod, "web-1", namespace)
    by_node[node].kill()
    by_node[node].start()

    async def back() -> bool:
        p = (await pods_by_name(client, namespace)).get("web-1")
        return p is not None and p.metadata.uid != pods["web-1"].metadata.uid and pod_is_ready(p)

    await eventually_async(back, timeout=90)
    assert (await pods_by_name(client, namespace))["web-1"].spec.node_name == node
    assert await volume_file(client, by_node, namespace, "data-web-1") == "web-1 v1\nweb-1 v1\n"

    # A rolling update with partition 2 changes only web-2: web-0 and web-1 are not even restarted.
    kept = {n: p.metadata.uid for n, p in (await pods_by_name(client, namespace)).items() if n != "web-2"}
    sts = await client.get(apps_pb2.StatefulSet, "web", namespace)
    sts.spec.update_strategy.rolling_update.partition = 2
    sts.spec.template.spec.containers[0].env[0].value = "2"
    await client.update(sts)

    async def only_web2_updated() -> bool:
        s = await client.get(apps_pb2.StatefulSet, "web", namespace)
        return s.status.updated_replicas == 1 and await all_ready(client, namespace, names)

    await eventually_async(only_web2_updated, timeout=90)
    await asyncio.sleep(3)  # and it stays so
    assert (await client.get(apps_pb2.StatefulSet, "web", namespace)).status.updated_replicas == 1
    after = await pods_by_name(client, namespace)
    assert {n: after[n].metadata.uid for n in kept} == kept
    assert (await volume_file(client, by_node, namespace, "data-web-2")).endswith("web-2 v2\n")
    assert "v2" not in await volume_file(client, by_node, namespace, "data-web-0")

    # Scale to 1: web-2 then web-1 go; their claims stay (whenScaled: Retain).
    await client.patch(apps_pb2.StatefulSet, "web", {"spec": {"replicas": 1}}, namespace)
    await eventually_async(lambda: all_ready(client, namespace, {"web-0"}), timeout=60)
    claims = {c.metadata.name for c in (await client.list(core_pb2.PersistentVolumeClaim, namespace)).items}
    assert claims == {"data-web-0", "data-web-1", "data-web-2"}

    # whenScaled: Delete on another set: the scaled-away ordinal's claim, volume and directory go.
    await client.create(statefulset("db", namespace, 2, when_scaled="Delete"))
    await eventually_async(lambda: all_ready(client, namespace, {"web-0", "db-0", "db-1"}), timeout=90)
    pvc = await client.get(core_pb2.PersistentVolumeClaim, "data-db-1", namespace)
    pv_name = pvc.spec.volume_name
    pv = await client.get(core_pb2.PersistentVolume, pv_name)
    holder = by_node[pv.spec.node_affinity.required.node_selector_terms[0].match_fields[0].values[0]]
    directory: Path = holder.data_dir / "local-volumes" / pv_name
    assert directory.is_dir()
    await client.patch(apps_pb2.StatefulSet, "db", {"spec": {"replicas": 1}}, namespace)

    async def claim_and_volume_gone() -> bool:
        claims = {c.metadata.name for c in (await client.list(core_pb2.PersistentVolumeClaim, namespace)).items}
        volumes = {v.metadata.name for v in (await client.list(core_pb2.PersistentVolume)).items}
        return "data-db-1" not in claims and pv_name not in volumes

    await eventually_async(claim_and_volume_gone, timeout=60)
    assert "data-db-0" in {
        c.metadata.name for c in (await client.list(core_pb2.PersistentVolumeClaim, namespace)).items
    }
