"""The CronJob controller: starts a Job each time a CronJob's schedule is due, as Kubernetes' does.

One ``reconcile(cronjob)``:

1. **Status from the Jobs it owns**: unfinished Jobs are ``status.active``; a finished one leaves it (a
   ``SawCompletedJob`` event) and, if it completed, moves ``lastSuccessfulTime``.
2. **History**: finished Jobs beyond ``successfulJobsHistoryLimit`` / ``failedJobsHistoryLimit`` are deleted,
   oldest first (their pods go with them).
3. **Schedule** (unless ``suspend``): the most recent due time after ``lastScheduleTime`` (or creation) and
   within ``startingDeadlineSeconds`` of now. More than 100 missed times earn a ``TooManyMissedTimes`` warning
   and only the most recent runs — never a storm. A time already run (its Job, named after the minute,
   exists) is not run again. ``Forbid`` skips it while a Job is active (``JobAlreadyActive`` event; it starts
   when that Job ends, if still within the deadline), ``Replace`` deletes the active Jobs first, ``Allow``
   runs side by side.
4. **Come back** at the next due time (the schedule is read in ``spec.timeZone``, or the controller
   manager's local zone).

Job names are deterministic (``<name>-<minutes since the epoch>``), so a retried or repeated sync of the same
due time meets AlreadyExists instead of starting a twin.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import ClassVar

from controlplane.api import cronschedule
from controlplane.api.conditions import first_true
from controlplane.api.cronjobs import SCHEDULED_TIMESTAMP, job_from_cronjob, scheduled_job_name
from controlplane.api.errors import AlreadyExistsError, NotFoundError
from controlplane.api.pb import batch_pb2, meta_pb2
from controlplane.client.events import NORMAL, WARNING
from controlplane.controllers.base import Controller, ControllerContext, copy
from controlplane.controllers.ownership import controller_of

log = logging.getLogger(__name__)

UTC = datetime.UTC


def _time(ts: object) -> datetime.datetime | None:
    """A protobuf Timestamp as an aware datetime; ``None`` when unset."""
    seconds = getattr(ts, "seconds", 0)
    nanos = getattr(ts, "nanos", 0)
    if not seconds and not nanos:
        return None
    return datetime.datetime.fromtimestamp(seconds + nanos / 1e9, UTC)


def finished_state(job: batch_pb2.Job) -> str:
    """ "Complete", "Failed", or "" for a Job still running."""
    c = first_true(job.status.conditions, "Complete", "Failed")
    return c.type if c is not None else ""


@dataclass(frozen=True)
class History:
    """A CronJob's finished Jobs, split by outcome, oldest first."""

    succeeded: list[batch_pb2.Job]
    failed: list[batch_pb2.Job]

    def beyond(self, successful_limit: int, failed_limit: int) -> list[batch_pb2.Job]:
        """The Jobs to delete so that at most the limits remain, the newest kept."""
        extra = self.succeeded[: max(0, len(self.succeeded) - successful_limit)]
        return extra + self.failed[: max(0, len(self.failed) - failed_limit)]


def history(jobs: list[batch_pb2.Job]) -> History:
    """Finished Jobs by outcome, ordered by start time (then creation, then name) as Kubernetes prunes them."""

    def order(j: batch_pb2.Job) -> tuple[float, float, str]:
        start = _time(j.status.start_time)
        created = _time(j.metadata.creation_timestamp)
        return (start.timestamp() if start else 0.0, created.timestamp() if created else 0.0, j.metadata.name)

    done = sorted((j for j in jobs if finished_state(j)), key=order)
    return History(
        succeeded=[j for j in done if finished_state(j) == "Complete"],
        failed=[j for j in done if finished_state(j) == "Failed"],
    )


def _ref(job: batch_pb2.Job) -> meta_pb2.ObjectReference:
    m = job.metadata
    return meta_pb2.ObjectReference(
        api_version="batch/v1", kind="Job", namespace=m.namespace, name=m.name, uid=m.uid, resource_version=""
    )


class CronJobController(Controller):
    """Runs CronJobs' Jobs on their schedules."""

    name: ClassVar[str] = "cronjob"
    default_workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.cronjobs = ctx.informers.informer(batch_pb2.CronJob)
        self.jobs = ctx.informers.informer(batch_pb2.Job)
        self.cronjobs.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), None)
        self.jobs.add_event_handler(self._job_changed, lambda old, new: self._job_changed(new), self._job_changed)

    def _job_changed(self, job: batch_pb2.Job) -> None:
        ref = controller_of(job)
        if ref is not None and ref.kind == "CronJob":
            self.queue.add(f"{job.metadata.namespace}/{ref.name}")

    async def reconcile(self, key: str) -> None:
        cached = self.cronjobs.store.get(key)
        if cached is None or cached.metadata.HasField("deletion_timestamp"):
            return
        cj = copy(cached)
        now = self.ctx.now()
        owned = [j for j in self.jobs.store.by_index("owner", cj.metadata.uid) if controller_of(j) is not None]
        status = copy(cj).status
        await self._sync_active(cj, status, owned)
        await self._prune(cj, owned)
        if not cj.spec.suspend:
            await self._schedule(key, cj, status, owned, now)
        if status != cj.status:
            cj.status.CopyFrom(status)
            try:
                await self.client.update_status(cj)
            except NotFoundError:
                return

    async def _sync_active(
        self, cj: batch_pb2.CronJob, status: batch_pb2.CronJobStatus, owned: list[batch_pb2.Job]
    ) -> None:
        by_uid = {j.metadata.uid: j for j in owned}
        keep: list[meta_pb2.ObjectReference] = []
        for ref in status.active:
            job = by_uid.get(ref.uid)
            if job is None:
                # Not in the cache: deleted (by hand, or as history), or created a moment ago and the cache has
                # not caught up. Ask the API server rather than guess.
                try:
                    job = await self.client.get(batch_pb2.Job, ref.name, ref.namespace)
                except NotFoundError:
                    continue
                if job.metadata.uid != ref.uid:
                    continue
            state = finished_state(job)
            if state:
                self.recorder.event(
                    cj, NORMAL, "SawCompletedJob", f"Saw completed job: {job.metadata.name}, status: {state}"
                )
                continue
            keep.append(ref)
        known = {r.uid for r in keep}
        for job in owned:
            if (
                not finished_state(job)
                and job.metadata.uid not in known
                and not job.metadata.HasField("deletion_timestamp")
            ):
                keep.append(_ref(job))
        del status.active[:]
        status.active.extend(sorted(keep, key=lambda r: r.name))
        for job in owned:
            if finished_state(job) == "Complete":
                done = _time(job.status.completion_time)
                last = _time(status.last_successful_time)
                if done is not None and (last is None or done > last):
                    status.last_successful_time.FromDatetime(done)

    async def _prune(self, cj: batch_pb2.CronJob, owned: list[batch_pb2.Job]) -> None:
        live = [j for j in owned if not j.metadata.HasField("deletion_timestamp")]
        for job in history(live).beyond(cj.spec.successful_jobs_history_limit, cj.spec.failed_jobs_history_limit):
            try:
                await self.client.delete(
                    batch_pb2.Job,
                    job.metadata.name,
                    job.metadata.namespace,
                    uid=job.metadata.uid,
                    propagation_policy="Background",
                )
                self.recorder.event(cj, NORMAL, "SuccessfulDelete", f"Deleted job {job.metadata.name}")
            except NotFoundError:
                pass

    async def _schedule(
        self,
        key: str,
        cj: batch_pb2.CronJob,
        status: batch_pb2.CronJobStatus,
        owned: list[batch_pb2.Job],
        now: datetime.datetime,
    ) -> None:
        spec = cj.spec
        try:
            tz = cronschedule.time_zone(spec.time_zone if spec.HasField("time_zone") else None)
            cronschedule.expand(spec.schedule)
        except ValueError as err:
            # Validation refuses these, but a zone can disappear from the machine's database.
            self.recorder.event(cj, WARNING, "UnparseableSchedule", f"unparseable schedule or time zone: {err}")
            return
        earliest = _time(status.last_schedule_time) or _time(cj.metadata.creation_timestamp) or now
        if spec.HasField("starting_deadline_seconds"):
            earliest = max(earliest, now - datetime.timedelta(seconds=spec.starting_deadline_seconds))
        due = cronschedule.due(spec.schedule, tz, earliest, now)
        self._come_back(key, spec.schedule, tz, now)
        if due.too_many_missed:
            self.recorder.event(
                cj,
                WARNING,
                "TooManyMissedTimes",
                "too many missed start times: more than 100. Set or decrease .spec.startingDeadlineSeconds "
                "or check clock skew",
            )
        scheduled = due.time
        if scheduled is None:
            return
        name = scheduled_job_name(cj.metadata.name, scheduled)
        if any(j.metadata.name == name for j in owned) or any(r.name == name for r in status.active):
            return  # this time already has its Job
        if spec.concurrency_policy == "Forbid" and status.active:
            self.recorder.event(
                cj,
                NORMAL,
                "JobAlreadyActive",
                f"Not starting job for {scheduled.isoformat()} because a prior execution is still running "
                "and concurrency policy is Forbid",
            )
            return
        if spec.concurrency_policy == "Replace":
            for ref in list(status.active):
                try:
                    await self.client.delete(
                        batch_pb2.Job, ref.name, ref.namespace, uid=ref.uid, propagation_policy="Background"
                    )
                    self.recorder.event(cj, NORMAL, "SuccessfulDelete", f"Deleted job {ref.name}")
                except NotFoundError:
                    pass
            del status.active[:]
        job = job_from_cronjob(
            cj, name, {SCHEDULED_TIMESTAMP: scheduled.astimezone(UTC).isoformat().replace("+00:00", "Z")}
        )
        try:
            created = await self.client.create(job)
            self.recorder.event(cj, NORMAL, "SuccessfulCreate", f"Created job {created.metadata.name}")
        except AlreadyExistsError:
            created = await self.client.get(batch_pb2.Job, name, cj.metadata.namespace)
            owner = controller_of(created)
            if owner is None or owner.uid != cj.metadata.uid:
                self.recorder.event(cj, WARNING, "FailedCreate", f"a Job named {name} exists and is not this CronJob's")
                return
        if all(r.uid != created.metadata.uid for r in status.active):
            status.active.append(_ref(created))
        status.last_schedule_time.FromDatetime(scheduled.astimezone(UTC))

    def _come_back(self, key: str, schedule: str, tz: datetime.tzinfo, now: datetime.datetime) -> None:
        nxt = cronschedule.next_after(schedule, tz, now)
        if nxt is not None:
            # A little after the due time, so that ``now`` has reached it when the sync runs.
            self.queue.add_after(key, max(0.0, (nxt - now).total_seconds()) + 0.2)
