"""PodDisruptionBudgets and evictions against a real API server: the disruption controller writes the
budget's status, ``EvictPod`` spends it. The test plays the agent by writing pods' Ready conditions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.api.errors import PreconditionError, TooManyRequestsError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2, policy_pb2
from controlplane.client.client import ApiClient
from tests.controllers.conftest import StartManager, pods_of, set_pod_state
from tests.helpers import eventually_async


def budget(name: str, namespace: str, **spec: Any) -> policy_pb2.PodDisruptionBudget:
    return from_manifest(  # type: ignore[return-value]
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": "db"}}, **spec},
        }
    )


async def ready_pods(client: ApiClient, namespace: str, count: int, app: str = "db") -> list[core_pb2.Pod]:
    pods: list[core_pb2.Pod] = []
    for i in range(count):
        p = from_manifest(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"{app}-{i}", "namespace": namespace, "labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "command": ["sleep", "1000"]}]},
            }
        )
        assert isinstance(p, core_pb2.Pod)
        created = await client.create(p)
        await set_pod_state(client, created, "Running", ready=True)
        pods.append(created)
    return pods


async def status_is(client: ApiClient, namespace: str, name: str, **want: int) -> bool:
    s = (await client.get(policy_pb2.PodDisruptionBudget, name, namespace)).status
    return all(getattr(s, k) == v for k, v in want.items())


async def test_min_available_allows_one_eviction_and_refuses_the_next(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["disruption"])
    await ready_pods(client, namespace, 3)
    await client.create(budget("db", namespace, minAvailable=2))
    await eventually_async(
        lambda: status_is(
            client, namespace, "db", disruptions_allowed=1, current_healthy=3, desired_healthy=2, expected_pods=3
        )
    )
    await client.evict("db-0", namespace)
    with pytest.raises(TooManyRequestsError, match="would violate the pod's disruption budget"):
        await client.evict("db-1", namespace)
    pdb = await client.get(policy_pb2.PodDisruptionBudget, "db", namespace)
    assert pdb.status.disruptions_allowed == 0
    # The controller's next status counts the evicted pod as gone and still allows nothing.
    await eventually_async(lambda: status_is(client, namespace, "db", current_healthy=2, disruptions_allowed=0))
    assert {p.metadata.name for p in await pods_of(client, namespace)} == {"db-1", "db-2"}


async def test_two_racing_evictions_never_both_spend_the_last_disruption(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["disruption"])
    await ready_pods(client, namespace, 4)
    await client.create(budget("db", namespace, maxUnavailable=1))
    # maxUnavailable counts against the pods' controller; these have none, so the budget allows nothing.
    await eventually_async(lambda: status_is(client, namespace, "db", disruptions_allowed=0))
    pdb = await client.get(policy_pb2.PodDisruptionBudget, "db", namespace)
    assert any(c.reason == "SyncFailed" for c in pdb.status.conditions)
    await client.delete(policy_pb2.PodDisruptionBudget, "db", namespace)
    await client.create(budget("db2", namespace, minAvailable=3))
    await eventually_async(lambda: status_is(client, namespace, "db2", disruptions_allowed=1))
    results = await asyncio.gather(*(client.evict(f"db-{i}", namespace) for i in range(4)), return_exceptions=True)
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1, results
    assert all(isinstance(r, TooManyRequestsError) for r in results if isinstance(r, BaseException))


async def test_pods_the_budget_does_not_count_are_evicted_freely(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["disruption"])
    pods = await ready_pods(client, namespace, 2)
    await client.create(budget("db", namespace, minAvailable=2))
    await eventually_async(lambda: status_is(client, namespace, "db", disruptions_allowed=0, current_healthy=2))
    with pytest.raises(TooManyRequestsError):
        await client.evict("db-0", namespace, dry_run=True)
    # A pod that is not Ready may go when the budget is met without it ... not here: 1 healthy < 2 desired.
    await set_pod_state(client, pods[1], "Running", ready=False)
    await eventually_async(lambda: status_is(client, namespace, "db", current_healthy=1))
    with pytest.raises(TooManyRequestsError):
        await client.evict("db-1", namespace)
    # ... but with AlwaysAllow it may.
    await client.patch(
        policy_pb2.PodDisruptionBudget, "db", {"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}}, namespace
    )
    await eventually_async(lambda: _observed(client, namespace, "db"))
    await client.evict("db-1", namespace)
    # A finished pod is never held.
    await set_pod_state(client, pods[0], "Succeeded")
    await client.evict("db-0", namespace)
    assert await pods_of(client, namespace) == []
    # A pod outside every budget is simply deleted; one under two budgets is refused.
    (other,) = await ready_pods(client, namespace, 1, app="web")
    await client.evict(other.metadata.name, namespace)
    await ready_pods(client, namespace, 1)
    await client.create(budget("twin", namespace, minAvailable=0))
    await eventually_async(lambda: _observed(client, namespace, "twin"))
    with pytest.raises(PreconditionError, match="more than one PodDisruptionBudget"):
        await client.evict("db-0", namespace)


async def _observed(client: ApiClient, namespace: str, name: str) -> bool:
    pdb = await client.get(policy_pb2.PodDisruptionBudget, name, namespace)
    return pdb.status.observed_generation == pdb.metadata.generation


async def test_an_unprocessed_budget_asks_to_try_again(client: ApiClient, namespace: str) -> None:
    # No disruption controller: the budget's status never catches up with its spec.
    await ready_pods(client, namespace, 2)
    await client.create(budget("db", namespace, minAvailable=1))
    with pytest.raises(TooManyRequestsError, match="still being processed"):
        await client.evict("db-0", namespace)
