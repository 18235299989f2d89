"""Deployment controller on a real API server, real scheduler and hollow nodes (pods become Running and
Ready as soon as they are bound; a deleted pod goes at once). Rollout rules are checked from the observed
pod history, never from timing."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controlplane.api.objects import from_manifest
from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.client.client import ApiClient
from controlplane.client.informer import Informer
from controlplane.controllers.deployment import REVISION
from controlplane.controllers.ownership import controller_of
from controlplane.controllers.podcontrol import pod_is_ready
from tests.controllers.conftest import StartManager, pods_of
from tests.helpers import change, eventually_async
from tests.scheduler.conftest import StartHollow, StartScheduler


def deployment(name: str, namespace: str, replicas: int, *, version: str = "1", **spec: Any) -> apps_pb2.Deployment:
    return from_manifest(  # type: ignore[return-value]
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
                        "containers": [
                            {"name": "main", "command": ["sleep", "3600"], "env": [{"name": "V", "value": version}]}
                        ]
                    },
                },
                **spec,
            },
        }
    )


@pytest.fixture
async def cluster_parts(hollow: StartHollow, start_scheduler: StartScheduler, start_manager: StartManager) -> None:
    await hollow(3)
    await start_scheduler("default-scheduler")
    await start_manager(["replicaset", "deployment"])


def set_version(obj: Any, version: str) -> None:
    """Change the first container's V variable (a new pod template)."""
    obj.spec.template.spec.containers[0].env[0].value = version


class PodHistory:
    """Follows the namespace's pods and records, after every change, how many are live and ready."""

    def __init__(self, client: ApiClient, namespace: str) -> None:
        self.informer: Informer[core_pb2.Pod] = Informer(client, core_pb2.Pod, namespace=namespace)
        self.samples: list[tuple[int, int, set[str]]] = []
        self.existing: list[set[str]] = []
        """After every change, the template versions of every pod that still exists, terminating ones included."""
        self.informer.add_event_handler(self._sample, lambda o, n: self._sample(n), self._sample)

    def _sample(self, _: core_pb2.Pod) -> None:
        pods = self.informer.store.objects()
        live = [p for p in pods if not p.metadata.HasField("deletion_timestamp")]
        versions = {p.spec.containers[0].env[0].value for p in live}
        self.samples.append((len(live), sum(1 for p in live if pod_is_ready(p)), versions))
        self.existing.append({p.spec.containers[0].env[0].value for p in pods})

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PodHistory]:
        task = asyncio.create_task(self.informer.run())
        try:
            await self.informer.wait_for_sync()
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def rolled_out(client: ApiClient, name: str, namespace: str, version: str) -> bool:
    d = await client.get(apps_pb2.Deployment, name, namespace)
    pods = await pods_of(client, namespace)
    return (
        d.status.observed_generation == d.metadata.generation
        and d.status.updated_replicas == d.spec.replicas == d.status.available_replicas == d.status.replicas
        and len(pods) == d.spec.replicas
        and all(p.spec.containers[0].env[0].value == version and pod_is_ready(p) for p in pods)
    )


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "max_total", "min_ready"),
    [
        pytest.param(4, 1, 0, 5, 4, id="surge-1-unavailable-0"),
        pytest.param(4, 0, 1, 4, 3, id="surge-0-unavailable-1"),
        pytest.param(4, "25%", "25%", 5, 3, id="defaults-25-percent"),
        pytest.param(5, "50%", "0%", 8, 5, id="surge-50-percent-rounds-up"),
    ],
)
@pytest.mark.usefixtures("cluster_parts")
async def test_rolling_update_stays_within_max_surge_and_max_unavailable(
    client: ApiClient, namespace: str, replicas: int, surge: Any, unavailable: Any, max_total: int, min_ready: int
) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    await client.create(deployment("web", namespace, replicas, strategy=strategy))
    await eventually_async(lambda: rolled_out(client, "web", namespace, "1"), timeout=30)
    async with PodHistory(client, namespace).running() as history:
        history.samples.clear()
        await client.patch(
            apps_pb2.Deployment,
            "web",
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "main", "command": ["sleep", "3600"], "env": [{"name": "V", "value": "2"}]}
                            ]
                        }
                    }
                }
            },
            namespace,
        )
        await eventually_async(lambda: rolled_out(client, "web", namespace, "2"), timeout=60)
    assert history.samples, "no pod changes observed"
    assert max(total for total, _, _ in history.samples) <= max_total
    assert min(ready for _, ready, _ in history.samples) >= min_ready
    assert any(v == {"1", "2"} for _, _, v in history.samples), "old and new pods never ran side by side"


@pytest.mark.usefixtures("cluster_parts")
async def test_recreate_stops_every_old_pod_before_starting_new_ones(client: ApiClient, namespace: str) -> None:
    await client.create(deployment("web", namespace, 3, strategy={"type": "Recreate"}))
    await eventually_async(lambda: rolled_out(client, "web", namespace, "1"), timeout=30)
    async with PodHistory(client, namespace).running() as history:
        await change(client, apps_pb2.Deployment, "web", namespace, lambda d: set_version(d, "2"))
        await eventually_async(lambda: rolled_out(client, "web", namespace, "2"), timeout=30)
    # Recreate: no new pod while an old one exists, a terminating one included (Kubernetes waits for the old
    # pods to be gone). Hollow nodes finish a pod's deletion at once, so this cannot catch a controller that
    # ignores terminating pods (tests/e2e/workloads/test_graceful_order.py does, with real slow terminations);
    # it does catch one that starts new pods before scaling old ones down.
    assert all(len(v) <= 1 for v in history.existing), "old and new pods overlapped"
    assert {"1"} in history.existing and {"2"} in history.existing


@pytest.mark.usefixtures("cluster_parts")
async def test_undo_reuses_the_old_replica_set_as_the_next_revision(client: ApiClient, namespace: str) -> None:
    await client.create(deployment("web", namespace, 2))
    await eventually_async(lambda: rolled_out(client, "web", namespace, "1"), timeout=30)
    d = await client.get(apps_pb2.Deployment, "web", namespace)
    first_template = apps_pb2.Deployment().spec.template
    first_template.CopyFrom(d.spec.template)
    await change(client, apps_pb2.Deployment, "web", namespace, lambda d: set_version(d, "2"))
    await eventually_async(lambda: rolled_out(client, "web", namespace, "2"), timeout=30)
    # What `navarch rollout undo` does: put the previous revision's template back.
    await change(client, apps_pb2.Deployment, "web", namespace, lambda d: d.spec.template.CopyFrom(first_template))
    await eventually_async(lambda: rolled_out(client, "web", namespace, "1"), timeout=30)
    sets = (await client.list(apps_pb2.ReplicaSet, namespace)).items
    assert len(sets) == 2, "the old template's ReplicaSet was reused, not recreated"
    by_version = {rs.spec.template.spec.containers[0].env[0].value: rs for rs in sets}
    assert by_version["1"].metadata.annotations[REVISION] == "3"
    assert by_version["2"].metadata.annotations[REVISION] == "2"

    async def deployment_revision() -> bool:
        got = await client.get(apps_pb2.Deployment, "web", namespace)
        return got.metadata.annotations.get(REVISION) == "3"

    await eventually_async(deployment_revision)


@pytest.mark.usefixtures("cluster_parts")
async def test_paused_deployment_scales_but_does_not_roll_out_until_resumed(client: ApiClient, namespace: str) -> None:
    await client.create(deployment("web", namespace, 2))
    await eventually_async(lambda: rolled_out(client, "web", namespace, "1"), timeout=30)

    def pause_scale_and_change(d: apps_pb2.Deployment) -> None:
        d.spec.paused = True
        d.spec.replicas = 3
        set_version(d, "2")

    await change(client, apps_pb2.Deployment, "web", namespace, pause_scale_and_change)

    async def scaled_old() -> bool:
        pods = await pods_of(client, namespace)
        return len(pods) == 3 and all(p.spec.containers[0].env[0].value == "1" for p in pods)

    await eventually_async(scaled_old, timeout=30)
    got = await client.get(apps_pb2.Deployment, "web", namespace)
    assert any(c.type == "Progressing" and c.reason == "DeploymentPaused" for c in got.status.conditions)
    assert len((await client.list(apps_pb2.ReplicaSet, namespace)).items) == 1
    await client.patch(apps_pb2.Deployment, "web", {"spec": {"paused": False}}, namespace)
    await eventually_async(lambda: rolled_out(client, "web", namespace, "2"), timeout=30)


@pytest.mark.usefixtures("cluster_parts")
async def test_progress_deadline_exceeded_when_new_pods_cannot_run(client: ApiClient, namespace: str) -> None:
    await client.create(deployment("web", namespace, 2, progressDeadlineSeconds=2))
    await eventually_async(lambda: rolled_out(client, "web", namespace, "1"), timeout=30)

    def unschedulable(d: apps_pb2.Deployment) -> None:
        d.spec.template.spec.node_selector["no-such-label"] = "x"

    await change(client, apps_pb2.Deployment, "web", namespace, unschedulable)

    async def stalled() -> bool:
        got = await client.get(apps_pb2.Deployment, "web", namespace)
        return any(
            c.type == "Progressing" and c.status == "False" and c.reason == "ProgressDeadlineExceeded"
            for c in got.status.conditions
        )

    await eventually_async(stalled, timeout=20)
    # The old pods keep serving meanwhile.
    assert sum(1 for p in await pods_of(client, namespace) if pod_is_ready(p)) >= 1


@pytest.mark.usefixtures("cluster_parts")
async def test_revision_history_limit_deletes_the_oldest_idle_replica_sets(client: ApiClient, namespace: str) -> None:
    await client.create(deployment("web", namespace, 1, revisionHistoryLimit=1))
    for version in ("1", "2", "3"):
        await change(client, apps_pb2.Deployment, "web", namespace, functools.partial(set_version, version=version))
        await eventually_async(functools.partial(rolled_out, client, "web", namespace, version), timeout=30)

    async def pruned() -> bool:
        sets = (await client.list(apps_pb2.ReplicaSet, namespace)).items
        return sorted(rs.metadata.annotations[REVISION] for rs in sets) == ["2", "3"]

    await eventually_async(pruned)
    for rs in (await client.list(apps_pb2.ReplicaSet, namespace)).items:
        ref = controller_of(rs)
        assert ref is not None and ref.kind == "Deployment"


@pytest.mark.usefixtures("cluster_parts")
async def test_a_resize_mid_rollout_is_spread_over_the_replica_sets_in_proportion(
    client: ApiClient, namespace: str
) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    await client.create(deployment("web", namespace, 10, strategy=strategy))
    await eventually_async(lambda: rolled_out(client, "web", namespace, "1"), timeout=60)

    def stuck_rollout(d: apps_pb2.Deployment) -> None:
        set_version(d, "2")
        d.spec.template.spec.node_selector["no-such-label"] = "x"  # the new pods never run: the rollout stalls

    await change(client, apps_pb2.Deployment, "web", namespace, stuck_rollout)

    async def sizes() -> dict[str, int]:
        sets = (await client.list(apps_pb2.ReplicaSet, namespace)).items
        return {rs.spec.template.spec.containers[0].env[0].value: rs.spec.replicas for rs in sets}

    async def mid_rollout() -> bool:
        return await sizes() == {"1": 10, "2": 3}  # 10 + 25 % surge (3), none of the old can go yet

    await eventually_async(mid_rollout, timeout=30)
    await client.patch(apps_pb2.Deployment, "web", {"spec": {"replicas": 20}}, namespace)

    # 20 with 25 % surge allows 25: old 10·25/13 → 19, new 3·25/13 → 6 (the newest does not take it all).
    async def proportional() -> bool:
        return await sizes() == {"1": 19, "2": 6}

    await eventually_async(proportional, timeout=30)
    for _ in range(6):  # and it stays so: the rollout goes on from there, still stalled
        await asyncio.sleep(0.5)
        assert await sizes() == {"1": 19, "2": 6}
