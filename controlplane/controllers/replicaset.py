"""ReplicaSet controller: keep ``spec.replicas`` pods matching the selector, and report how they are doing.

reconcile(ns/name):
    gone ──> forget expectations
    claim pods (adopt matching orphans, release non-matching)
    expectations satisfied and not deleting ──> create (slow start) or delete (least useful first)
    status: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas (minReadySeconds), observedGeneration
"""

from __future__ import annotations

import contextlib
import logging
from typing import ClassVar

from controlplane.api.conditions import new_condition, set_condition
from controlplane.api.errors import AlreadyExistsError, ApiError, NotFoundError
from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.api.selectors import from_label_selector_message
from controlplane.client.events import NORMAL, WARNING
from controlplane.client.indexer import object_key
from controlplane.controllers.base import Controller, ControllerContext, copy
from controlplane.controllers.expectations import Expectations
from controlplane.controllers.ownedpods import OwnedPodEvents
from controlplane.controllers.ownership import claim, claim_candidates
from controlplane.controllers.podcontrol import (
    next_available_in,
    pod_from_template,
    pod_is_active,
    pod_is_available,
    pod_is_ready,
    ready_since,
    slow_start,
)

log = logging.getLogger(__name__)

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: core_pb2.Pod) -> tuple[int, int, int, float, int, float]:
    """Sort key: the pod to delete first sorts first (unscheduled, pending, not ready, ready for the
    shortest time, most restarts, newest) — Kubernetes' ``ActivePods`` order."""
    restarts = sum(c.restart_count for c in pod.status.container_statuses)
    since = ready_since(pod)
    created = pod.metadata.creation_timestamp.seconds + pod.metadata.creation_timestamp.nanos / 1e9
    return (
        1 if pod.spec.node_name else 0,
        _PHASE_RANK.get(pod.status.phase, 0),
        1 if pod_is_ready(pod) else 0,
        -(since or 0.0),
        -restarts,
        -created,
    )


class ReplicaSetController(Controller):
    """Keeps each ReplicaSet's pods at ``spec.replicas``."""

    name: ClassVar[str] = "replicaset"
    default_workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.sets = ctx.informers.informer(apps_pb2.ReplicaSet)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.expectations = Expectations(ctx.config.expectations_timeout)
        self.sets.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        events = OwnedPodEvents(self.sets, "ReplicaSet", self.expectations, self.queue, self._matching_sets)
        self.pods.add_event_handler(events.added, events.updated, events.deleted)

    def _matching_sets(self, pod: core_pb2.Pod) -> list[str]:
        """ReplicaSets whose selector matches an orphan pod (they may adopt it)."""
        out = []
        for rs in self.sets.store.by_index("namespace", pod.metadata.namespace):
            if from_label_selector_message(rs.spec.selector).matches(pod.metadata.labels):
                out.append(object_key(rs))
        return out

    # ----------------------------------------------------------- reconcile

    async def reconcile(self, key: str) -> None:
        cached = self.sets.store.get(key)
        if cached is None:
            self.expectations.forget(key)
            return
        rs = copy(cached)
        selector = from_label_selector_message(rs.spec.selector)
        candidates = [p for p in claim_candidates(self.pods.store, rs) if pod_is_active(p)]
        pods = await claim(self.client, rs, candidates, lambda p: selector.matches(p.metadata.labels))
        error: ApiError | None = None
        if self.expectations.satisfied(key) and not rs.metadata.HasField("deletion_timestamp"):
            try:
                await self._manage_replicas(key, rs, pods)
            except ApiError as err:
                error = err
        await self._update_status(rs, pods, error)
        if error is not None:
            raise error

    async def _manage_replicas(self, key: str, rs: apps_pb2.ReplicaSet, pods: list[core_pb2.Pod]) -> None:
        diff = len(pods) - rs.spec.replicas
        if diff < 0:
            count = min(-diff, self.config.burst_replicas)
            self.expectations.expect_creations(key, count)

            async def create_one() -> None:
                pod = pod_from_template(
                    rs.spec.template, rs, generate_name=f"{rs.metadata.name}-", namespace=rs.metadata.namespace
                )
                try:
                    created = await self.client.create(pod)
                except AlreadyExistsError:
                    self.expectations.creation_observed(key)  # a generated name collided; next sync retries
                    raise
                except ApiError:
                    self.expectations.creation_observed(key)
                    raise
                self.recorder.event(rs, NORMAL, "SuccessfulCreate", f"Created pod: {created.metadata.name}")

            done, err = await slow_start(count, create_one)
            for _ in range(count - done - (1 if err else 0)):
                self.expectations.creation_observed(key)  # batches never started
            if err is not None:
                self.recorder.event(rs, WARNING, "FailedCreate", f"Error creating: {_message(err)}")
                raise err
        elif diff > 0:
            victims = sorted(pods, key=deletion_rank)[: min(diff, self.config.burst_replicas)]
            self.expectations.expect_deletions(key, [p.metadata.uid for p in victims])
            for pod in victims:
                try:
                    await self.client.delete(
                        core_pb2.Pod, pod.metadata.name, pod.metadata.namespace, uid=pod.metadata.uid
                    )
                    self.recorder.event(rs, NORMAL, "SuccessfulDelete", f"Deleted pod: {pod.metadata.name}")
                except NotFoundError:
                    self.expectations.deletion_observed(key, pod.metadata.uid)
                except ApiError as err:
                    self.expectations.deletion_observed(key, pod.metadata.uid)
                    self.recorder.event(rs, WARNING, "FailedDelete", f"Error deleting: {err.message}")
                    raise

    async def _update_status(self, rs: apps_pb2.ReplicaSet, pods: list[core_pb2.Pod], error: ApiError | None) -> None:
        now = self.ctx.now().timestamp()
        template_labels = rs.spec.template.metadata.labels
        status = apps_pb2.ReplicaSetStatus(
            replicas=len(pods),
            fully_labeled_replicas=sum(
                1 for p in pods if all(p.metadata.labels.get(k) == v for k, v in template_labels.items())
            ),
            ready_replicas=sum(1 for p in pods if pod_is_ready(p)),
            available_replicas=sum(1 for p in pods if pod_is_available(p, rs.spec.min_ready_seconds, now)),
            observed_generation=rs.metadata.generation,
        )
        conditions = [c for c in rs.status.conditions if c.type != "ReplicaFailure"]
        if error is not None:
            failure = new_condition("ReplicaFailure", "True", "FailedCreate", error.message)
            failure.last_transition_time.FromDatetime(self.ctx.now())
            conditions = set_condition(list(rs.status.conditions), failure)
        status.conditions.extend(conditions)
        # A pod that is ready but not yet available becomes available without any event: look again then.
        wait = next_available_in(pods, rs.spec.min_ready_seconds, now)
        if wait is not None:
            self.queue.add_after(object_key(rs), wait + 0.1)
        if status == rs.status:
            return
        rs.status.CopyFrom(status)
        with contextlib.suppress(NotFoundError):
            await self.client.update_status(rs)


def _message(err: Exception) -> str:
    return err.message if isinstance(err, ApiError) else str(err)
