"""Job controller: run pods until ``completions`` succeed, at most ``parallelism`` at a time.

reconcile(ns/name):
    finished ──> delete after ttlSecondsAfterFinished (if set); nothing else
    failures > backoffLimit ──> Failed (BackoffLimitExceeded), active pods deleted
    past activeDeadlineSeconds ──> Failed (DeadlineExceeded), active pods deleted
    succeeded >= completions ──> Complete
    otherwise ──> create pods up to min(parallelism, remaining), no sooner than the back-off after the last
                  failure (base * 2^(failures-1), capped), or delete extras if parallelism shrank

Failed pods are kept (they are the record of failures, as in Kubernetes); with restartPolicy OnFailure
the containers' restarts count as failures too.

``completionMode: Indexed`` gives each pod an index (``jobindex``): complete when every index succeeded,
``status.completedIndexes``; with ``backoffLimitPerIndex`` failures are counted per index instead of against
``backoffLimit``, given-up indexes go to ``status.failedIndexes``, and the Job fails (FailedIndexes) once every
index is done, or (MaxFailedIndexesExceeded) when more than ``maxFailedIndexes`` are given up.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import ClassVar

from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.api.conditions import first_true, new_condition, set_condition
from controlplane.api.errors import ApiError, NotFoundError
from controlplane.api.pb import batch_pb2, core_pb2, meta_pb2
from controlplane.api.selectors import from_label_selector_message
from controlplane.client.events import NORMAL, WARNING
from controlplane.client.indexer import object_key
from controlplane.controllers import jobindex
from controlplane.controllers.base import Controller, ControllerContext, copy
from controlplane.controllers.expectations import Expectations
from controlplane.controllers.ownedpods import OwnedPodEvents
from controlplane.controllers.ownership import claim, claim_candidates
from controlplane.controllers.podcontrol import pod_from_template, pod_is_ready, slow_start

log = logging.getLogger(__name__)


def _finished_condition(job: batch_pb2.Job) -> meta_pb2.Condition | None:
    return first_true(job.status.conditions, "Complete", "Failed")


def _seconds(ts: Timestamp) -> float:
    return float(ts.seconds) + ts.nanos / 1e9


def _finish_time(pod: core_pb2.Pod) -> float:
    times = [
        _seconds(c.state.terminated.finished_at)
        for c in pod.status.container_statuses
        if c.state.HasField("terminated")
    ]
    return max(times) if times else _seconds(pod.metadata.creation_timestamp)


def indexed_pod(job: batch_pb2.Job, index: int, failures: int) -> core_pb2.Pod:
    """The pod of one index: ``<job>-<index>-<random>``, its index in an annotation, a label and
    ``JOB_COMPLETION_INDEX``, the hostname ``<job>-<index>``, and the failures its index had before it."""
    name = job.metadata.name
    pod = pod_from_template(job.spec.template, job, generate_name=f"{name}-{index}-", namespace=job.metadata.namespace)
    pod.metadata.annotations[jobindex.INDEX] = str(index)
    pod.metadata.labels[jobindex.INDEX] = str(index)
    pod.metadata.annotations[jobindex.FAILURE_COUNT] = str(failures)
    if not pod.spec.hostname and len(f"{name}-{index}") <= 63:
        pod.spec.hostname = f"{name}-{index}"
    for container in [*pod.spec.init_containers, *pod.spec.containers]:
        if not any(e.name == jobindex.ENV for e in container.env):
            env = container.env.add(name=jobindex.ENV)
            env.value_from.field_ref.field_path = f"metadata.annotations['{jobindex.INDEX}']"
    return pod


class JobController(Controller):
    """Runs Jobs' pods to completion."""

    name: ClassVar[str] = "job"
    default_workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.jobs = ctx.informers.informer(batch_pb2.Job)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.expectations = Expectations(ctx.config.expectations_timeout)
        self._finished: dict[str, str] = {}
        """Jobs (key -> uid) this controller marked Failed or Complete: until the informer shows that status,
        a sync must not act on the stale copy (whose pods it just deleted, and whose failures it would count
        again from fewer pods, then create a replacement)."""
        self.jobs.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        events = OwnedPodEvents(self.jobs, "Job", self.expectations, self.queue)
        self.pods.add_event_handler(events.added, events.updated, events.deleted)

    def _now(self) -> datetime:
        return self.ctx.now().replace(microsecond=0)

    async def reconcile(self, key: str) -> None:
        cached = self.jobs.store.get(key)
        if cached is None:
            self.expectations.forget(key)
            self._finished.pop(key, None)
            return
        job = copy(cached)
        if job.metadata.HasField("deletion_timestamp"):
            return
        finished = _finished_condition(job)
        if finished is None and self._finished.get(key) == job.metadata.uid:
            return  # we finished it a moment ago; the update event of that status will bring it back here
        if finished is not None:
            await self._delete_when_expired(job, finished)
            return
        now = self._now()
        if not job.status.HasField("start_time"):
            job.status.start_time.FromDatetime(now)
        selector = from_label_selector_message(job.spec.selector)
        candidates = claim_candidates(self.pods.store, job)
        pods = await claim(self.client, job, candidates, lambda p: selector.matches(p.metadata.labels))
        active = [
            p
            for p in pods
            if p.status.phase not in ("Succeeded", "Failed") and not p.metadata.HasField("deletion_timestamp")
        ]
        succeeded = sum(1 for p in pods if p.status.phase == "Succeeded")
        failed_pods = [p for p in pods if p.status.phase == "Failed"]
        failures = len(failed_pods)
        if job.spec.template.spec.restart_policy == "OnFailure":
            failures += sum(c.restart_count for p in active for c in p.status.container_statuses)
        # Counts never go back (a failed pod deleted by hand is still a failure that happened).
        succeeded = max(succeeded, job.status.succeeded)
        failures = max(failures, job.status.failed)
        completions = job.spec.completions if job.spec.HasField("completions") else None
        parallelism = job.spec.parallelism if job.spec.HasField("parallelism") else 1
        indexed: jobindex.Progress | None = None
        if job.spec.completion_mode == "Indexed" and completions is not None:
            indexed = jobindex.progress(job.spec, job.status, pods)
            succeeded = len(indexed.succeeded)
        per_index = indexed is not None and job.spec.HasField("backoff_limit_per_index")

        failure: tuple[str, str] | None = None
        if indexed is not None and per_index:
            if job.spec.HasField("max_failed_indexes") and len(indexed.failed) > job.spec.max_failed_indexes:
                failure = (
                    "MaxFailedIndexesExceeded",
                    "Job has exceeded the specified maximal number of failed indexes",
                )
            elif indexed.finished and indexed.failed:
                failure = ("FailedIndexes", "Job has failed indexes")
        elif failures > job.spec.backoff_limit:
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        if failure is None and job.spec.HasField("active_deadline_seconds"):
            elapsed = now.timestamp() - _seconds(job.status.start_time)
            if elapsed >= job.spec.active_deadline_seconds:
                failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
            else:
                self.queue.add_after(key, job.spec.active_deadline_seconds - elapsed + 0.1)
        complete = (succeeded >= completions) if completions is not None else (succeeded > 0 and not active)

        error: ApiError | None = None
        if failure is not None:
            await self._delete_pods(key, job, active)
            active = []
        elif not complete and not job.spec.suspend and self.expectations.satisfied(key) and indexed is not None:
            try:
                active = await self._manage_indexed(key, job, indexed, failed_pods, parallelism)
            except ApiError as err:
                error = err
        elif not complete and not job.spec.suspend and self.expectations.satisfied(key):
            try:
                active = await self._manage(
                    key, job, active, succeeded, failed_pods, failures, completions, parallelism
                )
            except ApiError as err:
                error = err
        elif complete and active:
            await self._delete_pods(key, job, active)  # enough completions: the rest are not needed
            active = []
        elif job.spec.suspend and active:
            await self._delete_pods(key, job, active)
            active = []

        status = copy(job.status)
        status.active = len(active)
        status.succeeded = succeeded
        status.failed = failures
        status.ready = sum(1 for p in active if pod_is_ready(p))
        if indexed is not None:
            status.completed_indexes = jobindex.format_indexes(indexed.succeeded)
            if per_index:
                status.failed_indexes = jobindex.format_indexes(indexed.failed)
        conditions = list(status.conditions)
        if failure is not None:
            cond = new_condition("Failed", "True", failure[0], failure[1], now)
            conditions = set_condition(conditions, cond)
            self.recorder.event(job, WARNING, failure[0], failure[1])
        elif complete and not active:
            cond = new_condition("Complete", "True", now=now)
            conditions = set_condition(conditions, cond)
            status.completion_time.FromDatetime(now)
            self.recorder.event(job, NORMAL, "Completed", "Job completed")
        del status.conditions[:]
        status.conditions.extend(conditions)
        if status != job.status:
            job.status.CopyFrom(status)
            with contextlib.suppress(NotFoundError):
                job = await self.client.update_status(job)
                if _finished_condition(job) is not None:  # written: remember it until the cache shows it
                    self._finished[key] = job.metadata.uid
            finished = _finished_condition(job)
            if finished is not None:
                await self._delete_when_expired(job, finished)
        if error is not None:
            raise error

    async def _manage(
        self,
        key: str,
        job: batch_pb2.Job,
        active: list[core_pb2.Pod],
        succeeded: int,
        failed_pods: list[core_pb2.Pod],
        failures: int,
        completions: int | None,
        parallelism: int,
    ) -> list[core_pb2.Pod]:
        if completions is None:
            want = parallelism if succeeded == 0 else 0
        else:
            want = min(parallelism, completions - succeeded)
        if len(active) > want:
            extra = sorted(active, key=lambda p: (1 if p.spec.node_name else 0, 1 if pod_is_ready(p) else 0))
            await self._delete_pods(key, job, extra[: len(active) - want])
            return extra[len(active) - want :]
        missing = min(want - len(active), self.config.burst_replicas)
        if missing <= 0:
            return active
        if failed_pods:
            delay = min(self.config.job_backoff_base * 2 ** (len(failed_pods) - 1), self.config.job_backoff_max)
            wait = max(_finish_time(p) for p in failed_pods) + delay - self.ctx.now().timestamp()
            if wait > 0:
                self.queue.add_after(key, wait)  # back off before retrying after a failure
                return active
        self.expectations.expect_creations(key, missing)

        async def create_one() -> None:
            pod = pod_from_template(
                job.spec.template, job, generate_name=f"{job.metadata.name}-", namespace=job.metadata.namespace
            )
            try:
                created = await self.client.create(pod)
            except ApiError:
                self.expectations.creation_observed(key)
                raise
            self.recorder.event(job, NORMAL, "SuccessfulCreate", f"Created pod: {created.metadata.name}")

        done, err = await slow_start(missing, create_one)
        for _ in range(missing - done - (1 if err else 0)):
            self.expectations.creation_observed(key)
        if err is not None:
            self.recorder.event(job, WARNING, "FailedCreate", f"Error creating: {err}")
            raise err
        return active + [core_pb2.Pod()] * done  # counted as active until the cache shows them

    async def _manage_indexed(
        self,
        key: str,
        job: batch_pb2.Job,
        indexed: jobindex.Progress,
        failed_pods: list[core_pb2.Pod],
        parallelism: int,
    ) -> list[core_pb2.Pod]:
        # An index that failed waits out its own back-off (base * 2^(its failures - 1)); the others go on.
        now = self.ctx.now().timestamp()
        blocked: set[int] = set()
        wake: float | None = None
        for pod in failed_pods:
            index = jobindex.pod_index(pod, indexed.completions)
            if index is None:
                continue
            count = max(1, indexed.failures.get(index, 1))
            delay = min(self.config.job_backoff_base * 2 ** (count - 1), self.config.job_backoff_max)
            left = _finish_time(pod) + delay - now
            if left > 0:
                blocked.add(index)
                wake = left if wake is None else min(wake, left)
        if wake is not None:
            self.queue.add_after(key, wake)
        plan = jobindex.plan(indexed, parallelism, blocked)
        if plan.delete:
            await self._delete_pods(key, job, plan.delete)
        gone = {p.metadata.uid for p in plan.delete}
        kept = [p for pods in indexed.active.values() for p in pods if p.metadata.uid not in gone]
        todo = plan.create[: self.config.burst_replicas]
        if not todo:
            return kept
        self.expectations.expect_creations(key, len(todo))
        queue = iter(todo)

        async def create_one() -> None:
            index = next(queue)
            pod = indexed_pod(job, index, indexed.failures.get(index, 0))
            try:
                created = await self.client.create(pod)
            except ApiError:
                self.expectations.creation_observed(key)
                raise
            self.recorder.event(job, NORMAL, "SuccessfulCreate", f"Created pod: {created.metadata.name}")

        done, err = await slow_start(len(todo), create_one)
        for _ in range(len(todo) - done - (1 if err else 0)):
            self.expectations.creation_observed(key)
        if err is not None:
            self.recorder.event(job, WARNING, "FailedCreate", f"Error creating: {err}")
            raise err
        return kept + [core_pb2.Pod()] * done

    async def _delete_pods(self, key: str, job: batch_pb2.Job, pods: list[core_pb2.Pod]) -> None:
        self.expectations.expect_deletions(key, [p.metadata.uid for p in pods])
        for p in pods:
            try:
                await self.client.delete(core_pb2.Pod, p.metadata.name, p.metadata.namespace, uid=p.metadata.uid)
                self.recorder.event(job, NORMAL, "SuccessfulDelete", f"Deleted pod: {p.metadata.name}")
            except NotFoundError:
                self.expectations.deletion_observed(key, p.metadata.uid)

    async def _delete_when_expired(self, job: batch_pb2.Job, finished: meta_pb2.Condition) -> None:
        if not job.spec.HasField("ttl_seconds_after_finished"):
            return
        expires = _seconds(finished.last_transition_time) + job.spec.ttl_seconds_after_finished
        left = expires - self.ctx.now().timestamp()
        if left > 0:
            self.queue.add_after(object_key(job), left + 0.1)
            return
        with contextlib.suppress(NotFoundError):
            # Background propagation: the garbage collector removes its pods.
            await self.client.delete(
                batch_pb2.Job,
                job.metadata.name,
                job.metadata.namespace,
                uid=job.metadata.uid,
                propagation_policy="Background",
            )
