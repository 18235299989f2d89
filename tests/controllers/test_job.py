"""Job controller against a real API server; the test plays the agent by writing pod phases."""

from __future__ import annotations

from typing import Any

from controlplane.api.errors import ApiError, NotFoundError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import batch_pb2, core_pb2
from controlplane.client.client import ApiClient
from tests.controllers.conftest import StartManager, pods_of, set_pod_state
from tests.helpers import eventually_async


def job(name: str, namespace: str, **spec: Any) -> batch_pb2.Job:
    return from_manifest(  # type: ignore[return-value]
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "command": ["true"]}]},
                },
                **spec,
            },
        }
    )


async def condition(client: ApiClient, namespace: str, type_: str, reason: str = "") -> bool:
    j = await client.get(batch_pb2.Job, "work", namespace)
    return any(
        c.type == type_ and c.status == "True" and (not reason or c.reason == reason) for c in j.status.conditions
    )


async def running_pods(client: ApiClient, namespace: str) -> list[Any]:
    return [p for p in await pods_of(client, namespace) if p.status.phase in ("Pending", "Running")]


async def test_job_runs_completions_with_bounded_parallelism(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["job"])
    await client.create(job("work", namespace, completions=3, parallelism=2))
    finished = 0
    while finished < 3:

        async def some_running() -> bool:
            return len(await running_pods(client, namespace)) > 0

        await eventually_async(some_running)
        running = await running_pods(client, namespace)
        assert len(running) <= 2
        await set_pod_state(client, running[0], "Succeeded")
        finished += 1
    await eventually_async(lambda: condition(client, namespace, "Complete"))
    j = await client.get(batch_pb2.Job, "work", namespace)
    assert j.status.succeeded == 3 and j.status.active == 0
    assert j.status.HasField("completion_time")
    assert len(await pods_of(client, namespace)) == 3


async def test_job_fails_after_backoff_limit_failures(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["job"], job_backoff_base=0.2)
    await client.create(job("work", namespace, backoffLimit=1))
    for attempt in range(2):

        async def new_pod(n: int = attempt) -> bool:
            return len(await pods_of(client, namespace)) == n + 1 and len(await running_pods(client, namespace)) == 1

        await eventually_async(new_pod)
        (pod,) = await running_pods(client, namespace)
        await set_pod_state(client, pod, "Failed")
    await eventually_async(lambda: condition(client, namespace, "Failed", "BackoffLimitExceeded"))
    j = await client.get(batch_pb2.Job, "work", namespace)
    assert j.status.failed == 2
    assert len(await pods_of(client, namespace)) == 2, "no retry after the limit"


async def test_job_past_its_active_deadline_fails_and_stops_its_pods(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["job"])
    await client.create(job("work", namespace, activeDeadlineSeconds=1, parallelism=2, completions=2))
    await eventually_async(lambda: condition(client, namespace, "Failed", "DeadlineExceeded"), timeout=15)

    async def stopped() -> bool:
        return await running_pods(client, namespace) == []

    await eventually_async(stopped)


async def test_finished_job_is_deleted_after_its_ttl(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["job"])
    await client.create(job("work", namespace, ttlSecondsAfterFinished=1))

    async def one_pod() -> bool:
        return len(await running_pods(client, namespace)) == 1

    await eventually_async(one_pod)
    (pod,) = await running_pods(client, namespace)
    await set_pod_state(client, pod, "Succeeded")

    async def complete_or_already_collected() -> bool:
        try:  # with a 1 s TTL a slow runner may see the Job only after it was deleted (it must finish first)
            return bool(await condition(client, namespace, "Complete"))
        except NotFoundError:
            return True

    await eventually_async(complete_or_already_collected)

    async def gone() -> bool:
        try:
            await client.get(batch_pb2.Job, "work", namespace)
        except NotFoundError:
            return True
        return False

    await eventually_async(gone, timeout=15)


async def test_with_on_failure_container_restarts_count_against_the_backoff_limit(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    """docs/controllers.md: with restartPolicy OnFailure a pod is restarted in place, and its container
    restarts count as failures (plausible bug: only Failed pods counted, so an OnFailure Job loops forever)."""
    await start_manager(["job"], job_backoff_base=0.2)
    await client.create(
        job(
            "work",
            namespace,
            backoffLimit=2,
            template={"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main", "command": ["false"]}]}},
        )
    )

    async def one_pod() -> bool:
        return len(await running_pods(client, namespace)) == 1

    await eventually_async(one_pod)
    (pod,) = await running_pods(client, namespace)
    # What the agent writes after the container failed twice and was restarted in place (still Running).
    for _ in range(10):
        current = await client.get(core_pb2.Pod, pod.metadata.name, namespace)
        current.status.phase = "Running"
        del current.status.container_statuses[:]
        current.status.container_statuses.add(name="main", restart_count=2)
        try:
            await client.update_status(current)
            break
        except ApiError:
            continue
    assert not await condition(client, namespace, "Failed")
    j = await client.get(batch_pb2.Job, "work", namespace)
    assert j.status.failed <= 2
    current = await client.get(core_pb2.Pod, pod.metadata.name, namespace)
    current.status.container_statuses[0].restart_count = 3  # one more than the limit allows
    await client.update_status(current)
    await eventually_async(lambda: condition(client, namespace, "Failed", "BackoffLimitExceeded"))
    # Restarted in place, never replaced (the failed Job then stops its pod, so it may already be gone).
    names = {p.metadata.name for p in await pods_of(client, namespace, active_only=False)}
    assert names <= {pod.metadata.name}, names


def index_of(p: core_pb2.Pod) -> int:
    return int(p.metadata.annotations["batch.kubernetes.io/job-completion-index"])


async def test_indexed_job_runs_each_index_once_lowest_first(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["job"])
    await client.create(job("work", namespace, completions=3, parallelism=2, completionMode="Indexed"))

    async def indexes_running(want: set[int]) -> bool:
        return {index_of(p) for p in await running_pods(client, namespace)} == want

    await eventually_async(lambda: indexes_running({0, 1}))
    first = {index_of(p): p for p in await running_pods(client, namespace)}
    p1 = first[1]
    assert p1.metadata.name.startswith("work-1-") and p1.spec.hostname == "work-1"
    assert p1.metadata.labels["batch.kubernetes.io/job-completion-index"] == "1"
    (env,) = [e for e in p1.spec.containers[0].env if e.name == "JOB_COMPLETION_INDEX"]
    assert env.value_from.field_ref.field_path == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    await set_pod_state(client, p1, "Succeeded")
    await eventually_async(lambda: indexes_running({0, 2}))
    for p in await running_pods(client, namespace):
        await set_pod_state(client, p, "Succeeded")
    await eventually_async(lambda: condition(client, namespace, "Complete"))
    j = await client.get(batch_pb2.Job, "work", namespace)
    assert j.status.completed_indexes == "0-2" and j.status.succeeded == 3
    assert len(await pods_of(client, namespace)) == 3  # one pod per index, no twin


async def test_backoff_limit_per_index_gives_up_one_index_and_fails_the_job_at_the_end(
    client: ApiClient, namespace: str, start_manager: StartManager
) -> None:
    await start_manager(["job"], job_backoff_base=0.2)
    await client.create(
        job("work", namespace, completions=3, parallelism=3, completionMode="Indexed", backoffLimitPerIndex=1)
    )

    async def running_index(i: int) -> core_pb2.Pod | None:
        return next((p for p in await running_pods(client, namespace) if index_of(p) == i), None)

    for attempt in range(2):  # index 1 fails twice: more than its budget of 1
        await eventually_async(lambda: running_index(1))
        victim = await running_index(1)
        assert victim is not None
        assert victim.metadata.annotations["batch.kubernetes.io/job-index-failure-count"] == str(attempt)
        await set_pod_state(client, victim, "Failed")

    async def given_up() -> bool:
        j = await client.get(batch_pb2.Job, "work", namespace)
        return j.status.failed_indexes == "1"

    await eventually_async(given_up)
    assert await running_index(1) is None
    for p in await running_pods(client, namespace):
        assert index_of(p) in (0, 2)
        await set_pod_state(client, p, "Succeeded")
    await eventually_async(lambda: condition(client, namespace, "Failed", "FailedIndexes"))
    j = await client.get(batch_pb2.Job, "work", namespace)
    assert j.status.completed_indexes == "0,2"
