"""Deployment controller: one ReplicaSet per pod template, rolled from old to new by the strategy.

reconcile(ns/name):
    claim ReplicaSets ──> new RS (template equal, ignoring pod-template-hash) + old RSs
    paused ──────────────> only scale to spec.replicas, no rollout
    Recreate ────────────> old RSs to 0; once their pods are gone, new RS to spec.replicas
    RollingUpdate ───────> new RS up while total <= replicas + maxSurge;
                           old RSs down while available >= replicas - maxUnavailable
    complete ────────────> delete old RSs beyond revisionHistoryLimit
    status + conditions (Available, Progressing / ProgressDeadlineExceeded)

Revisions: each RS carries ``deployment.kubernetes.io/revision``; a template that comes back (rollout undo)
reuses its RS and takes the next revision number. Availability is counted from the pods themselves (never
more than an RS's ``spec.replicas``), so a stale RS status cannot make a rollout exceed maxUnavailable.
"""

from __future__ import annotations

import contextlib
import logging
from typing import ClassVar

from controlplane.api.conditions import find, set_condition
from controlplane.api.errors import AlreadyExistsError, ConflictError, NotFoundError
from controlplane.api.pb import apps_pb2, core_pb2, meta_pb2
from controlplane.api.selectors import from_label_selector_message
from controlplane.client.events import NORMAL
from controlplane.client.indexer import object_key
from controlplane.controllers.base import Controller, ControllerContext, copy
from controlplane.controllers.deploymentutil import SetSize, is_scaling_event, proportional_sizes
from controlplane.controllers.intstr import surge_and_unavailable
from controlplane.controllers.ownership import claim, claim_candidates, controller_of, controller_ref
from controlplane.controllers.podcontrol import (
    POD_TEMPLATE_HASH,
    next_available_in,
    pod_is_active,
    pod_is_available,
    template_hash,
)

log = logging.getLogger(__name__)

HASH_LABEL = POD_TEMPLATE_HASH
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"


def _size_of(rs: apps_pb2.ReplicaSet) -> SetSize:
    def number(key: str) -> int | None:
        text = rs.metadata.annotations.get(key, "")
        return int(text) if text.isdigit() and len(text) < 10 else None

    return SetSize(
        name=rs.metadata.name,
        replicas=rs.spec.replicas,
        created=rs.metadata.creation_timestamp.seconds + rs.metadata.creation_timestamp.nanos / 1e9,
        max_replicas=number(MAX_REPLICAS),
        desired=number(DESIRED_REPLICAS),
    )


def same_template(a: core_pb2.PodTemplateSpec, b: core_pb2.PodTemplateSpec) -> bool:
    """Templates equal apart from the pod-template-hash label."""
    x, y = copy(a), copy(b)
    x.metadata.labels.pop(HASH_LABEL, None)
    y.metadata.labels.pop(HASH_LABEL, None)
    return x == y


def revision(rs: apps_pb2.ReplicaSet) -> int:
    """The revision an RS stands for (0 if unknown)."""
    text = rs.metadata.annotations.get(REVISION, "0")
    return int(text) if text.isdigit() else 0


def _condition(type_: str, status: str, reason: str, message: str, now: meta_pb2.Condition) -> meta_pb2.Condition:
    c = meta_pb2.Condition(type=type_, status=status, reason=reason, message=message)
    c.last_update_time.CopyFrom(now.last_update_time)
    c.last_transition_time.CopyFrom(now.last_update_time)
    return c


class DeploymentController(Controller):
    """Rolls Deployments out through ReplicaSets."""

    name: ClassVar[str] = "deployment"
    default_workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.deployments = ctx.informers.informer(apps_pb2.Deployment)
        self.sets = ctx.informers.informer(apps_pb2.ReplicaSet)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.deployments.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.sets.add_event_handler(self._rs_changed, lambda old, new: self._rs_changed(new), self._rs_changed)
        self.pods.add_event_handler(self._pod_changed, lambda old, new: self._pod_changed(new), self._pod_changed)

    def _rs_changed(self, rs: apps_pb2.ReplicaSet) -> None:
        ref = controller_of(rs)
        if ref is not None and ref.kind == "Deployment":
            self.queue.add(f"{rs.metadata.namespace}/{ref.name}")
        elif ref is None:
            for d in self.deployments.store.by_index("namespace", rs.metadata.namespace):
                if from_label_selector_message(d.spec.selector).matches(rs.metadata.labels):
                    self.enqueue(d)

    def _pod_changed(self, pod: core_pb2.Pod) -> None:
        ref = controller_of(pod)
        if ref is None or ref.kind != "ReplicaSet":
            return
        rs = self.sets.store.get(f"{pod.metadata.namespace}/{ref.name}")
        if rs is not None:
            self._rs_changed(rs)

    # ----------------------------------------------------------- helpers

    def _available(self, rs: apps_pb2.ReplicaSet, min_ready: int) -> int:
        now = self.ctx.now().timestamp()
        pods = [p for p in self.pods.store.by_index("owner", rs.metadata.uid) if pod_is_active(p)]
        return min(rs.spec.replicas, sum(1 for p in pods if pod_is_available(p, min_ready, now)))

    async def _scale(self, d: apps_pb2.Deployment, rs: apps_pb2.ReplicaSet, replicas: int, surge: int) -> bool:
        """Set an RS's replicas (and the annotations that remember the Deployment's size). True if changed."""
        want = {DESIRED_REPLICAS: str(d.spec.replicas), MAX_REPLICAS: str(d.spec.replicas + surge)}
        if rs.spec.replicas == replicas and all(rs.metadata.annotations.get(k) == v for k, v in want.items()):
            return False
        direction = "up" if replicas > rs.spec.replicas else "down"
        changed = rs.spec.replicas != replicas
        new = copy(rs)
        new.spec.replicas = replicas
        new.metadata.annotations.update(want)
        updated = await self.client.update(new)
        rs.CopyFrom(updated)
        if changed:
            self.recorder.event(
                d, NORMAL, "ScalingReplicaSet", f"Scaled {direction} replica set {rs.metadata.name} to {replicas}"
            )
        return changed

    async def _new_replica_set(
        self,
        d: apps_pb2.Deployment,
        new: apps_pb2.ReplicaSet | None,
        olds: list[apps_pb2.ReplicaSet],
        replicas: int,
        surge: int,
    ) -> apps_pb2.ReplicaSet:
        """The RS for the current template: the existing one (its revision bumped if it came back), or a new one."""
        max_old = max((revision(r) for r in olds), default=0)
        if new is not None:
            want_rev = str(max_old + 1) if revision(new) <= max_old else str(revision(new))
            cause = d.metadata.annotations.get(CHANGE_CAUSE)
            if new.metadata.annotations.get(REVISION) != want_rev or (
                cause and new.metadata.annotations.get(CHANGE_CAUSE) != cause
            ):
                upd = copy(new)
                upd.metadata.annotations[REVISION] = want_rev
                if cause:
                    upd.metadata.annotations[CHANGE_CAUSE] = cause
                new = await self.client.update(upd)
            return new
        collisions = d.status.collision_count if d.status.HasField("collision_count") else 0
        for _ in range(5):
            h = template_hash(d.spec.template, collisions)
            rs = apps_pb2.ReplicaSet(api_version="apps/v1", kind="ReplicaSet")
            rs.metadata.name = f"{d.metadata.name}-{h}"
            rs.metadata.namespace = d.metadata.namespace
            rs.metadata.labels.update(d.spec.template.metadata.labels)
            rs.metadata.labels[HASH_LABEL] = h
            rs.metadata.annotations.update(
                {
                    REVISION: str(max_old + 1),
                    DESIRED_REPLICAS: str(d.spec.replicas),
                    MAX_REPLICAS: str(d.spec.replicas + surge),
                }
            )
            if CHANGE_CAUSE in d.metadata.annotations:
                rs.metadata.annotations[CHANGE_CAUSE] = d.metadata.annotations[CHANGE_CAUSE]
            rs.metadata.owner_references.append(controller_ref(d))
            rs.spec.replicas = replicas
            rs.spec.min_ready_seconds = d.spec.min_ready_seconds
            rs.spec.selector.CopyFrom(d.spec.selector)
            rs.spec.selector.match_labels[HASH_LABEL] = h
            rs.spec.template.CopyFrom(d.spec.template)
            rs.spec.template.metadata.labels[HASH_LABEL] = h
            try:
                created = await self.client.create(rs)
            except AlreadyExistsError:
                existing = await self.client.get(apps_pb2.ReplicaSet, rs.metadata.name, rs.metadata.namespace)
                ref = controller_of(existing)
                if (
                    ref is not None
                    and ref.uid == d.metadata.uid
                    and same_template(existing.spec.template, d.spec.template)
                ):
                    return existing  # ours, created by an earlier sync the cache has not shown yet
                collisions += 1  # a different template with the same hash: hash again
                bumped = copy(d)
                bumped.status.collision_count = collisions
                await self.client.update_status(bumped)
                continue
            self.recorder.event(
                d, NORMAL, "ScalingReplicaSet", f"Scaled up replica set {created.metadata.name} to {replicas}"
            )
            return created
        raise ConflictError(f'Deployment "{d.metadata.name}": could not find a free name for its new ReplicaSet')

    # ----------------------------------------------------------- reconcile

    async def reconcile(self, key: str) -> None:
        cached = self.deployments.store.get(key)
        if cached is None:
            return
        d = copy(cached)
        selector = from_label_selector_message(d.spec.selector)
        if selector.empty:
            return  # validation refuses this; nothing sensible to manage
        candidates = claim_candidates(self.sets.store, d)
        sets = await claim(self.client, d, candidates, lambda rs: selector.matches(rs.metadata.labels))
        sets = [copy(rs) for rs in sets if not rs.metadata.HasField("deletion_timestamp")]
        new = next((rs for rs in sets if same_template(rs.spec.template, d.spec.template)), None)
        olds = sorted((rs for rs in sets if rs is not new), key=lambda r: (revision(r), r.metadata.name))
        surge, unavailable = (0, 0)
        if d.spec.strategy.type != "Recreate":
            ru = d.spec.strategy.rolling_update
            surge, unavailable = surge_and_unavailable(ru.max_surge, ru.max_unavailable, d.spec.replicas)
        progressed = False
        if d.metadata.HasField("deletion_timestamp"):
            pass
        elif d.spec.strategy.type != "Recreate" and is_scaling_event(map(_size_of, sets), d.spec.replicas):
            # Resized mid-rollout (or while paused): every active ReplicaSet keeps its share; the rollout goes
            # on from there at the next sync.
            progressed = await self._scale_proportionally(d, new, olds, surge)
        elif d.spec.paused:
            await self._scale_paused(d, new, olds, surge)
        elif d.spec.strategy.type == "Recreate":
            new, progressed = await self._recreate(d, new, olds)
        else:
            new, progressed = await self._rolling(d, new, olds, surge, unavailable)
        if new is not None and d.metadata.annotations.get(REVISION) != new.metadata.annotations.get(REVISION):
            annotated = copy(d)
            annotated.metadata.annotations[REVISION] = new.metadata.annotations.get(REVISION, "")
            d = await self.client.update(annotated)  # what `rollout history`/`undo` read as "current"
        all_sets = [*olds, *([new] if new is not None else [])]
        complete = (
            new is not None
            and new.spec.replicas == d.spec.replicas
            and all(rs.spec.replicas == 0 and rs.status.replicas == 0 for rs in olds)
            and self._available(new, d.spec.min_ready_seconds) >= d.spec.replicas
            and new.status.replicas == d.spec.replicas
        )
        if complete and not d.spec.paused:
            await self._cleanup(d, olds)
        await self._update_status(d, new, all_sets, unavailable, progressed, complete)

    async def _scale_proportionally(
        self, d: apps_pb2.Deployment, new: apps_pb2.ReplicaSet | None, olds: list[apps_pb2.ReplicaSet], surge: int
    ) -> bool:
        sets = [*olds, *([new] if new is not None else [])]
        active = [rs for rs in sets if rs.spec.replicas > 0]
        if len(active) <= 1:
            # One active set (or none: the newest) simply takes the Deployment's size.
            target = active[0] if active else (new or (olds[-1] if olds else None))
            return target is not None and await self._scale(d, target, d.spec.replicas, surge)
        if (
            new is not None
            and new.spec.replicas >= d.spec.replicas
            and new.status.available_replicas >= d.spec.replicas
        ):
            changed = False  # the new set is saturated: the old ones simply go
            for rs in olds:
                changed |= await self._scale(d, rs, 0, surge)
            return changed
        status_replicas = sum(rs.status.replicas for rs in sets)
        sizes = proportional_sizes([_size_of(rs) for rs in active], d.spec.replicas, surge, status_replicas)
        changed = False
        for rs in active:
            changed |= await self._scale(d, rs, sizes[rs.metadata.name], surge)
        return changed

    async def _scale_paused(
        self, d: apps_pb2.Deployment, new: apps_pb2.ReplicaSet | None, olds: list[apps_pb2.ReplicaSet], surge: int
    ) -> None:
        """Paused: no rollout, but replicas still follow spec.replicas (the newest active RS absorbs it)."""
        active = [rs for rs in [*olds, *([new] if new else [])] if rs.spec.replicas > 0]
        if not active:
            target = new or (olds[-1] if olds else None)
            if target is not None and d.spec.replicas > 0:
                await self._scale(d, target, d.spec.replicas, surge)
            return
        total = sum(rs.spec.replicas for rs in active)
        diff = d.spec.replicas - total
        for rs in sorted(active, key=lambda r: revision(r) if r is not new else 10**9, reverse=True):
            if diff == 0:
                break
            size = max(0, rs.spec.replicas + diff)
            diff -= size - rs.spec.replicas
            await self._scale(d, rs, size, surge)

    async def _recreate(
        self, d: apps_pb2.Deployment, new: apps_pb2.ReplicaSet | None, olds: list[apps_pb2.ReplicaSet]
    ) -> tuple[apps_pb2.ReplicaSet | None, bool]:
        progressed = False
        for rs in olds:
            if rs.spec.replicas:
                progressed |= await self._scale(d, rs, 0, 0)
        if progressed:
            return new, True
        # Old pods must be gone, not just asked to go, before a new one starts.
        if any(rs.status.replicas or self.pods.store.by_index("owner", rs.metadata.uid) for rs in olds):
            return new, False
        if new is None:
            return await self._new_replica_set(d, None, olds, d.spec.replicas, 0), True
        new = await self._new_replica_set(d, new, olds, d.spec.replicas, 0)
        return new, await self._scale(d, new, d.spec.replicas, 0)

    async def _rolling(
        self,
        d: apps_pb2.Deployment,
        new: apps_pb2.ReplicaSet | None,
        olds: list[apps_pb2.ReplicaSet],
        surge: int,
        unavailable: int,
    ) -> tuple[apps_pb2.ReplicaSet, bool]:
        want = d.spec.replicas
        total = sum(rs.spec.replicas for rs in olds) + (new.spec.replicas if new else 0)
        current_new = new.spec.replicas if new else 0
        # New RS: up to the surge allowance, never past spec.replicas; down if larger than spec.replicas.
        if current_new > want:
            target_new = want
        else:
            room = max(0, want + surge - total)
            target_new = current_new + min(room, want - current_new)
        if new is None:
            return await self._new_replica_set(d, None, olds, target_new, surge), True
        new = await self._new_replica_set(d, new, olds, target_new, surge)
        if await self._scale(d, new, target_new, surge):
            return new, True
        # Old RSs: down while availability stays >= want - maxUnavailable.
        old_total = sum(rs.spec.replicas for rs in olds)
        if old_total == 0:
            return new, False
        min_available = want - unavailable
        all_total = old_total + new.spec.replicas
        new_unavailable = new.spec.replicas - self._available(new, d.spec.min_ready_seconds)
        max_down = all_total - min_available - new_unavailable
        if max_down <= 0:
            return new, False
        scaled = False
        # First the old pods that are not available anyway: removing them costs no availability.
        for rs in olds:
            if max_down <= 0:
                break
            unhealthy = rs.spec.replicas - self._available(rs, d.spec.min_ready_seconds)
            if unhealthy <= 0:
                continue
            down = min(max_down, unhealthy)
            scaled |= await self._scale(d, rs, rs.spec.replicas - down, surge)
            max_down -= down
        available = sum(self._available(rs, d.spec.min_ready_seconds) for rs in [*olds, new])
        budget = min(max_down, available - min_available)
        for rs in olds:  # oldest revision first
            if budget <= 0:
                break
            if rs.spec.replicas == 0:
                continue
            down = min(rs.spec.replicas, budget)
            scaled |= await self._scale(d, rs, rs.spec.replicas - down, surge)
            budget -= down
        return new, scaled

    async def _cleanup(self, d: apps_pb2.Deployment, olds: list[apps_pb2.ReplicaSet]) -> None:
        limit = d.spec.revision_history_limit if d.spec.HasField("revision_history_limit") else 10
        idle = [rs for rs in olds if rs.spec.replicas == 0 and rs.status.replicas == 0]
        for rs in idle[: max(0, len(idle) - limit)]:
            with contextlib.suppress(NotFoundError):
                await self.client.delete(
                    apps_pb2.ReplicaSet, rs.metadata.name, rs.metadata.namespace, uid=rs.metadata.uid
                )

    async def _update_status(
        self,
        d: apps_pb2.Deployment,
        new: apps_pb2.ReplicaSet | None,
        sets: list[apps_pb2.ReplicaSet],
        unavailable: int,
        progressed: bool,
        complete: bool,
    ) -> None:
        now = self.ctx.now()
        stamp = meta_pb2.Condition()
        stamp.last_update_time.FromDatetime(now.replace(microsecond=0))
        available = sum(self._available(rs, d.spec.min_ready_seconds) for rs in sets)
        if d.spec.min_ready_seconds:
            pods = [p for rs in sets for p in self.pods.store.by_index("owner", rs.metadata.uid)]
            wait = next_available_in(pods, d.spec.min_ready_seconds, now.timestamp())
            if wait is not None:
                self.queue.add_after(object_key(d), wait + 0.1)
        status = apps_pb2.DeploymentStatus(
            observed_generation=d.metadata.generation,
            replicas=sum(rs.status.replicas for rs in sets),
            updated_replicas=new.status.replicas if new is not None else 0,
            ready_replicas=sum(rs.status.ready_replicas for rs in sets),
            available_replicas=available,
            unavailable_replicas=max(0, d.spec.replicas - available),
        )
        if d.status.HasField("collision_count"):
            status.collision_count = d.status.collision_count
        conditions = list(d.status.conditions)
        if available >= d.spec.replicas - unavailable:
            cond = _condition(
                "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", stamp
            )
        else:
            cond = _condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                stamp,
            )
        old_available = find(conditions, "Available")
        if old_available is not None and old_available.status == cond.status:
            cond.last_update_time.CopyFrom(old_available.last_update_time)
        conditions = set_condition(conditions, cond)
        conditions = self._progressing(d, new, status, conditions, stamp, progressed, complete)
        status.conditions.extend(conditions)
        if status != d.status:
            d.status.CopyFrom(status)
            try:
                await self.client.update_status(d)
            except NotFoundError:
                return

    def _progressing(
        self,
        d: apps_pb2.Deployment,
        new: apps_pb2.ReplicaSet | None,
        status: apps_pb2.DeploymentStatus,
        conditions: list[meta_pb2.Condition],
        stamp: meta_pb2.Condition,
        progressed: bool,
        complete: bool,
    ) -> list[meta_pb2.Condition]:
        current = find(conditions, "Progressing")
        rs_name = new.metadata.name if new is not None else ""
        if d.spec.paused:
            if current is None or current.reason != "DeploymentPaused":
                return set_condition(
                    conditions, _condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", stamp)
                )
            return conditions
        if current is not None and current.reason == "DeploymentPaused":
            return set_condition(
                conditions, _condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed", stamp)
            )
        if complete:
            if current is None or current.reason != "NewReplicaSetAvailable":
                c = _condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                    stamp,
                )
                return set_condition(conditions, c)
            return conditions
        old = d.status
        moved = (
            progressed
            or status.updated_replicas > old.updated_replicas
            or status.replicas - status.updated_replicas < old.replicas - old.updated_replicas
            or status.ready_replicas > old.ready_replicas
            or status.available_replicas > old.available_replicas
            or d.metadata.generation != old.observed_generation
        )
        if moved or current is None or current.reason == "NewReplicaSetAvailable":
            reason = (
                "NewReplicaSetCreated"
                if progressed and new is not None and new.status.replicas == 0
                else "ReplicaSetUpdated"
            )
            c = _condition("Progressing", "True", reason, f'ReplicaSet "{rs_name}" is progressing.', stamp)
            self.queue.add_after(object_key(d), (d.spec.progress_deadline_seconds or 600) + 1)
            return set_condition(conditions, c)
        if current.status == "True" and d.spec.HasField("progress_deadline_seconds"):
            last = current.last_update_time.ToDatetime().timestamp()
            left = last + d.spec.progress_deadline_seconds - stamp.last_update_time.ToDatetime().timestamp()
            if left <= 0:
                c = _condition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                    stamp,
                )
                self.recorder.event(d, "Warning", "ProgressDeadlineExceeded", c.message)
                return set_condition(conditions, c)
            self.queue.add_after(object_key(d), left + 1)
        return conditions
