"""The CronJob controller against a real API server, on a clock the test moves: each sync is run by the test
at a chosen time, so minutes of schedule take milliseconds and every decision is checked where it is made.
The test plays the Job controller by writing Jobs' conditions."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from controlplane.api.cronjobs import SCHEDULED_TIMESTAMP
from controlplane.api.objects import from_manifest
from controlplane.api.pb import batch_pb2, core_pb2
from controlplane.client.client import ApiClient
from controlplane.client.events import EventRecorder
from controlplane.client.informer import InformerFactory
from controlplane.controllers.base import ControllerContext
from controlplane.controllers.cronjob import CronJobController
from tests.helpers import eventually_async

UTC = datetime.UTC


def cronjob(name: str, namespace: str, **spec: Any) -> batch_pb2.CronJob:
    return from_manifest(  # type: ignore[return-value]
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "schedule": "* * * * *",
                "jobTemplate": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "template": {
                            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "command": ["true"]}]}
                        }
                    },
                },
                **spec,
            },
        }
    )


@dataclass
class Driver:
    """The controller, its caches, and the clock it reads."""

    client: ApiClient
    controller: CronJobController
    informers: InformerFactory
    recorder: EventRecorder
    now: datetime.datetime

    async def sync(self, cj: batch_pb2.CronJob, at: datetime.datetime) -> batch_pb2.CronJob:
        """Run one reconcile at ``at`` once the caches show what the API holds; return the CronJob after."""
        self.now = at
        await self.settle(cj)
        await self.controller.reconcile(f"{cj.metadata.namespace}/{cj.metadata.name}")
        await self.settle(cj)
        return await self.client.get(batch_pb2.CronJob, cj.metadata.name, cj.metadata.namespace)

    async def settle(self, cj: batch_pb2.CronJob) -> None:
        ns = cj.metadata.namespace

        async def caught_up() -> bool:
            live = await self.client.get(batch_pb2.CronJob, cj.metadata.name, ns)
            cached = self.controller.cronjobs.store.get(f"{ns}/{cj.metadata.name}")
            jobs = {(j.metadata.name, j.metadata.resource_version) for j in await self.jobs(ns)}
            seen = {
                (j.metadata.name, j.metadata.resource_version)
                for j in self.controller.jobs.store.objects()
                if j.metadata.namespace == ns
            }
            return (
                cached is not None
                and cached.metadata.resource_version == live.metadata.resource_version
                and (jobs == seen)
            )

        await eventually_async(caught_up, timeout=15)

    async def jobs(self, namespace: str) -> list[batch_pb2.Job]:
        return list((await self.client.list(batch_pb2.Job, namespace)).items)

    async def finish(self, job: batch_pb2.Job, outcome: str, at: datetime.datetime) -> None:
        """Mark a Job Complete or Failed at ``at``, as the Job controller would."""
        live = await self.client.get(batch_pb2.Job, job.metadata.name, job.metadata.namespace)
        live.status.start_time.FromDatetime(at - datetime.timedelta(seconds=5))
        c = live.status.conditions.add(type=outcome, status="True")
        c.last_transition_time.FromDatetime(at)
        if outcome == "Complete":
            live.status.completion_time.FromDatetime(at)
        await self.client.update_status(live)

    async def reasons(self, cj: batch_pb2.CronJob) -> list[str]:
        await self.recorder.flush()
        events = (await self.client.list(core_pb2.Event, cj.metadata.namespace)).items
        return [e.reason for e in events if e.involved_object.name == cj.metadata.name]


@pytest.fixture
async def driver(client: ApiClient) -> AsyncIterator[Driver]:
    informers = InformerFactory(client)
    recorder = EventRecorder(client, "navarch-controller-manager", "test")
    d = Driver(client, None, informers, recorder, datetime.datetime.now(UTC))  # type: ignore[arg-type]
    d.controller = CronJobController(ControllerContext(client, informers, recorder, now=lambda: d.now))
    informers.start()
    recorder.start()
    await informers.wait_for_sync(30)
    yield d
    await informers.stop()
    await recorder.stop(flush_timeout=2.0)


def minute_after(t: datetime.datetime, minutes: int, seconds: int = 1) -> datetime.datetime:
    """``seconds`` past the ``minutes``-th minute boundary after ``t``."""
    boundary = t.replace(second=0, microsecond=0) + datetime.timedelta(minutes=minutes)
    return boundary + datetime.timedelta(seconds=seconds)


def created_at(cj: batch_pb2.CronJob) -> datetime.datetime:
    return cj.metadata.creation_timestamp.ToDatetime(UTC)


async def test_forbid_runs_once_per_minute_skips_while_active_and_catches_up(
    client: ApiClient, namespace: str, driver: Driver
) -> None:
    cj = await client.create(cronjob("tick", namespace, concurrencyPolicy="Forbid"))
    t0 = created_at(cj)
    cj = await driver.sync(cj, t0 + datetime.timedelta(seconds=0.5))
    assert not await driver.jobs(namespace), "nothing is due before the first minute boundary"

    cj = await driver.sync(cj, minute_after(t0, 1))
    (first,) = await driver.jobs(namespace)
    m1 = minute_after(t0, 1, 0)
    assert first.metadata.name == f"tick-{int(m1.timestamp()) // 60}"
    assert first.metadata.annotations[SCHEDULED_TIMESTAMP] == m1.isoformat().replace("+00:00", "Z")
    assert first.metadata.labels["app"] == "tick"
    assert [r.name for r in cj.status.active] == [first.metadata.name]
    assert cj.status.last_schedule_time.ToDatetime(UTC) == m1

    # A sync again in the same minute starts nothing.
    cj = await driver.sync(cj, minute_after(t0, 1, 30))
    assert len(await driver.jobs(namespace)) == 1

    # Minute 2 while the first still runs (it takes 70 s): skipped, and the skip is recorded.
    cj = await driver.sync(cj, minute_after(t0, 2))
    assert len(await driver.jobs(namespace)) == 1
    assert "JobAlreadyActive" in await driver.reasons(cj)

    # The first ends at 70 s: minute 2's run starts then (late, as Kubernetes does), once.
    done_at = minute_after(t0, 2, 10)
    await driver.finish(first, "Complete", done_at)
    cj = await driver.sync(cj, done_at)
    cj = await driver.sync(cj, minute_after(t0, 2, 20))
    jobs = sorted(j.metadata.name for j in await driver.jobs(namespace))
    m2 = minute_after(t0, 2, 0)
    assert jobs == sorted([first.metadata.name, f"tick-{int(m2.timestamp()) // 60}"])
    assert [r.name for r in cj.status.active] == [f"tick-{int(m2.timestamp()) // 60}"]
    assert cj.status.last_successful_time.ToDatetime(UTC) == done_at
    assert "SawCompletedJob" in await driver.reasons(cj)


async def test_replace_deletes_the_active_job_and_allow_runs_side_by_side(
    client: ApiClient, namespace: str, driver: Driver
) -> None:
    replace = await client.create(cronjob("swap", namespace, concurrencyPolicy="Replace"))
    allow = await client.create(cronjob("both", namespace))
    t0 = max(created_at(replace), created_at(allow))
    for minute in (1, 2):
        replace = await driver.sync(replace, minute_after(t0, minute))
        allow = await driver.sync(allow, minute_after(t0, minute))
    jobs = await driver.jobs(namespace)
    swap = [j for j in jobs if j.metadata.name.startswith("swap-") and not j.metadata.HasField("deletion_timestamp")]
    both = [j for j in jobs if j.metadata.name.startswith("both-")]
    m2 = int(minute_after(t0, 2, 0).timestamp()) // 60
    assert [j.metadata.name for j in swap] == [f"swap-{m2}"]
    assert [r.name for r in replace.status.active] == [f"swap-{m2}"]
    assert len(both) == 2 and len(allow.status.active) == 2
    assert "SuccessfulDelete" in await driver.reasons(replace)


async def test_history_limits_keep_the_newest_finished_jobs(client: ApiClient, namespace: str, driver: Driver) -> None:
    cj = await client.create(cronjob("hist", namespace, successfulJobsHistoryLimit=1, failedJobsHistoryLimit=1))
    t0 = created_at(cj)
    outcomes = ["Complete", "Failed", "Complete", "Failed", "Complete"]
    for minute, outcome in enumerate(outcomes, start=1):
        cj = await driver.sync(cj, minute_after(t0, minute))
        newest = max(await driver.jobs(namespace), key=lambda j: j.metadata.name)
        await driver.finish(newest, outcome, minute_after(t0, minute, 30))
    cj = await driver.sync(cj, minute_after(t0, len(outcomes), 40))
    await driver.settle(cj)
    live = [j for j in await driver.jobs(namespace) if not j.metadata.HasField("deletion_timestamp")]
    names = sorted(j.metadata.name for j in live)
    base = int(minute_after(t0, 0, 0).timestamp()) // 60
    assert names == [f"hist-{base + 4}", f"hist-{base + 5}"]  # the newest Failed and the newest Complete


async def test_many_missed_times_start_one_job_and_warn(client: ApiClient, namespace: str, driver: Driver) -> None:
    cj = await client.create(cronjob("late", namespace))
    t0 = created_at(cj)
    cj = await driver.sync(cj, minute_after(t0, 500, 7))  # 500 minutes without a sync (a controller outage)
    jobs = await driver.jobs(namespace)
    assert [j.metadata.name for j in jobs] == [f"late-{int(minute_after(t0, 500, 0).timestamp()) // 60}"]
    assert "TooManyMissedTimes" in await driver.reasons(cj)


async def test_a_run_later_than_its_starting_deadline_is_skipped(
    client: ApiClient, namespace: str, driver: Driver
) -> None:
    cj = await client.create(cronjob("strict", namespace, startingDeadlineSeconds=10))
    t0 = created_at(cj)
    cj = await driver.sync(cj, minute_after(t0, 1, 30))  # 30 s late, deadline 10 s
    assert not await driver.jobs(namespace)
    cj = await driver.sync(cj, minute_after(t0, 2, 5))  # 5 s late: runs
    assert len(await driver.jobs(namespace)) == 1


async def test_a_suspended_cronjob_starts_nothing(client: ApiClient, namespace: str, driver: Driver) -> None:
    cj = await client.create(cronjob("paused", namespace, suspend=True))
    t0 = created_at(cj)
    for minute in (1, 2, 3):
        cj = await driver.sync(cj, minute_after(t0, minute))
    assert not await driver.jobs(namespace)
    assert not cj.status.HasField("last_schedule_time")
