"""CronJobs end to end on the wall clock: the real controller manager, scheduler and an agent running real
processes, through three minute boundaries, with three CronJobs side by side:

- Forbid, every minute, a Job that takes 70 s: one Job per scheduled minute, never two of its processes at
  once, the minute that found a Job still running recorded as skipped (plausible bugs: a second Job started
  beside the running one; the skipped minute lost or run twice);
- Replace, every minute, a Job that would run 5 minutes: each minute's Job replaces the last, so one is left;
- Allow with successfulJobsHistoryLimit 1, a Job that exits at once: only the newest finished Job is kept.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

from controlplane.api.cronjobs import SCHEDULED_TIMESTAMP
from controlplane.api.objects import from_manifest
from controlplane.api.pb import batch_pb2, core_pb2
from controlplane.client.client import ApiClient
from tests.e2e.conftest import eventually_async
from tests.e2e.workloads.conftest import StartAgents

UTC = datetime.UTC


def cronjob(name: str, namespace: str, command: list[str], **spec: Any) -> batch_pb2.CronJob:
    return from_manifest(  # type: ignore[return-value]
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "schedule": "* * * * *",
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "terminationGracePeriodSeconds": 1,
                                "containers": [{"name": "c", "command": command}],
                            }
                        },
                    }
                },
                **spec,
            },
        }
    )


def owner(obj: Any) -> str:
    return next((r.name for r in obj.metadata.owner_references if r.controller), "")


async def test_cronjobs_on_the_wall_clock_forbid_replace_and_history(
    client: ApiClient, namespace: str, agents: StartAgents
) -> None:
    await agents(1)
    # Start well inside a minute, so that the three boundaries counted below are the first three.
    second = datetime.datetime.now(UTC).second
    if not 2 <= second <= 45:
        await asyncio.sleep((62 - second) % 60)
    start = datetime.datetime.now(UTC)
    await client.create(cronjob("forbid", namespace, ["sleep", "70"], concurrencyPolicy="Forbid"))
    await client.create(cronjob("replace", namespace, ["sleep", "300"], concurrencyPolicy="Replace"))
    await client.create(cronjob("history", namespace, ["true"], successfulJobsHistoryLimit=1))
    third = start.replace(second=0, microsecond=0) + datetime.timedelta(minutes=3)
    job_of_pod: dict[str, str] = {}
    forbid_jobs_seen: set[str] = set()
    most_forbid_running = 0
    # Watch until 15 s past the third boundary, every second: "never two" must hold all along.
    while datetime.datetime.now(UTC) < third + datetime.timedelta(seconds=15):
        jobs = (await client.list(batch_pb2.Job, namespace)).items
        forbid_jobs_seen |= {j.metadata.name for j in jobs if owner(j) == "forbid"}
        pods = (await client.list(core_pb2.Pod, namespace)).items
        for p in pods:
            job_of_pod[p.metadata.name] = p.metadata.labels.get("job-name", "")
        running = [p for p in pods if p.status.phase == "Running" and job_of_pod[p.metadata.name].startswith("forbid-")]
        most_forbid_running = max(most_forbid_running, len(running))
        await asyncio.sleep(1)

    # Forbid: minute 1 ran at once, minute 2 ran when minute 1's Job ended (at 70 s), minute 3 was skipped
    # (minute 2's Job still ran) and is not run late while that Job still runs.
    assert most_forbid_running == 1
    by_name = {j.metadata.name: j for j in (await client.list(batch_pb2.Job, namespace)).items}
    forbid = sorted(forbid_jobs_seen)
    assert len(forbid) == 2, forbid
    scheduled = [by_name[n].metadata.annotations[SCHEDULED_TIMESTAMP] for n in forbid]
    assert len(set(scheduled)) == 2  # one Job per scheduled minute
    events = (await client.list(core_pb2.Event, namespace)).items
    skips = [e for e in events if e.involved_object.name == "forbid" and e.reason == "JobAlreadyActive"]
    assert skips, "the skipped minute was not recorded"

    # Replace: three minutes, three Jobs, only the newest left running.
    async def one_replace_left() -> bool:
        live = [
            j
            for j in (await client.list(batch_pb2.Job, namespace)).items
            if owner(j) == "replace" and not j.metadata.HasField("deletion_timestamp")
        ]
        return len(live) == 1

    await eventually_async(one_replace_left, timeout=30)
    replaced = [e for e in events if e.involved_object.name == "replace" and e.reason == "SuccessfulDelete"]
    assert len(replaced) >= 2

    # History: three quick runs, one kept.
    async def one_history_left() -> bool:
        left = [j for j in (await client.list(batch_pb2.Job, namespace)).items if owner(j) == "history"]
        return len(left) == 1

    await eventually_async(one_history_left, timeout=30)
    cj = await client.get(batch_pb2.CronJob, "history", namespace)
    assert cj.status.HasField("last_successful_time")
    assert time.time() - cj.status.last_schedule_time.seconds < 90
