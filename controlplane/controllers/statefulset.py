"""The StatefulSet controller: pods with stable names, stable storage, in order.

``reconcile(set)``, one step at a time like Kubernetes' own:

1. **Revisions**: the template's hash names the update revision (a ControllerRevision ``<set>-<hash>``
   holding the template, made if missing); ``status.currentRevision`` is what the pods ran before. Pods carry
   theirs in the ``controller-revision-hash`` label.
2. **Members** ``<set>-0 .. <set>-(replicas-1)``: each missing one is created with its claims
   (``<template>-<set>-<ordinal>``, made first and never replaced) from the revision its ordinal gets
   (below ``partition``: current; else update). ``OrderedReady`` creates one at a time, each only once every
   lower ordinal is Running and Ready, and stops at a pod that is not; ``Parallel`` creates them all. A
   failed or finished member is deleted, to be made again. Names are fixed, so a replacement cannot exist
   while the old pod is still terminating: at most one pod per ordinal, always.
3. **Scale down**: ordinals at or above ``replicas``, highest first; ``OrderedReady`` one at a time and only
   while the others are healthy. Their claims stay (``whenScaled: Retain``) or are deleted once the pod is
   gone (``Delete``). ``whenDeleted: Delete`` makes the set the claims' owner, so the garbage collector
   removes them with it.
4. **Rolling update**: once every member exists, members not at the update revision are deleted from the
   highest ordinal down to ``partition``, at most ``maxUnavailable`` unavailable at a time; they come back
   at the update revision. ``OnDelete`` leaves that to the user.
5. **Status**, and old revisions beyond ``revisionHistoryLimit`` (not current, not update, not used by a pod)
   deleted.
"""

from __future__ import annotations

import contextlib
import logging
from typing import ClassVar

from controlplane.api.conditions import pod_ready
from controlplane.api.errors import AlreadyExistsError, ApiError, ConflictError, NotFoundError
from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.api.selectors import from_label_selector_message
from controlplane.client.events import NORMAL, WARNING
from controlplane.controllers.base import Controller, ControllerContext, copy
from controlplane.controllers.expectations import Expectations
from controlplane.controllers.intstr import scaled_value
from controlplane.controllers.ownedpods import OwnedPodEvents
from controlplane.controllers.ownership import claim, claim_candidates, controller_of, controller_ref
from controlplane.controllers.podcontrol import CONTROLLER_REVISION_HASH, pod_from_template, template_hash
from controlplane.controllers.statefulsetutil import (
    Member,
    claim_name,
    condemned,
    next_to_update,
    ordinal_of,
    pod_name,
    revision_for,
)

log = logging.getLogger(__name__)

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def _healthy(pod: core_pb2.Pod) -> bool:
    return pod.status.phase == "Running" and pod_ready(pod) and not pod.metadata.HasField("deletion_timestamp")


def _finished(pod: core_pb2.Pod) -> bool:
    return pod.status.phase in ("Failed", "Succeeded")


class StatefulSetController(Controller):
    """Keeps each StatefulSet's ordinals, claims and revisions."""

    name: ClassVar[str] = "statefulset"
    default_workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.sets = ctx.informers.informer(apps_pb2.StatefulSet)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.claims = ctx.informers.informer(core_pb2.PersistentVolumeClaim)
        self.revisions = ctx.informers.informer(apps_pb2.ControllerRevision)
        self.expectations = Expectations(ctx.config.expectations_timeout)
        self.sets.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        events = OwnedPodEvents(self.sets, "StatefulSet", self.expectations, self.queue)
        self.pods.add_event_handler(events.added, events.updated, events.deleted)
        self.revisions.add_event_handler(self._owned, lambda old, new: self._owned(new), self._owned)

    def _owned(self, obj: apps_pb2.ControllerRevision) -> None:
        ref = controller_of(obj)
        if ref is not None and ref.kind == "StatefulSet":
            self.queue.add(f"{obj.metadata.namespace}/{ref.name}")

    async def reconcile(self, key: str) -> None:
        cached = self.sets.store.get(key)
        if cached is None:
            self.expectations.forget(key)
            return
        sts = copy(cached)
        if sts.metadata.HasField("deletion_timestamp"):
            return
        selector = from_label_selector_message(sts.spec.selector)
        if selector.empty:
            return
        name = sts.metadata.name
        candidates = [
            p for p in claim_candidates(self.pods.store, sts) if ordinal_of(name, p.metadata.name) is not None
        ]
        pods = await claim(self.client, sts, candidates, lambda p: selector.matches(p.metadata.labels))
        update = await self._update_revision(sts)
        current = sts.status.current_revision or update
        members: dict[int, core_pb2.Pod] = {}
        for p in pods:
            i = ordinal_of(name, p.metadata.name)
            if i is not None:
                members[i] = p
        replicas = sts.spec.replicas
        ordered = sts.spec.pod_management_policy != "Parallel"
        rolling = sts.spec.update_strategy.type != "OnDelete"
        partition = sts.spec.update_strategy.rolling_update.partition if rolling else 0
        if self.expectations.satisfied(key):
            await self._converge(key, sts, members, replicas, ordered, rolling, partition, current, update)
        await self._retain_claims(sts, members, replicas)
        await self._update_status(sts, members, replicas, current, update, rolling)
        await self._prune_revisions(sts, members, current, update)

    # ---------------------------------------------------------------- steps

    async def _converge(
        self,
        key: str,
        sts: apps_pb2.StatefulSet,
        members: dict[int, core_pb2.Pod],
        replicas: int,
        ordered: bool,
        rolling: bool,
        partition: int,
        current: str,
        update: str,
    ) -> None:
        name = sts.metadata.name
        for i in range(replicas):
            pod = members.get(i)
            if pod is not None and _finished(pod) and not pod.metadata.HasField("deletion_timestamp"):
                await self._delete(key, sts, pod, f"pod {pod.metadata.name} ended ({pod.status.phase}): made again")
                if ordered:
                    return
                continue
            if pod is None:
                revision = revision_for(i, partition, rolling, current, update)
                await self._create(key, sts, i, revision)
                if ordered:
                    return  # the next one waits until this one is Running and Ready
                continue
            if ordered and not _healthy(pod):
                return  # OrderedReady: nothing further until this ordinal is healthy
        for i in condemned(members, replicas):
            pod = members[i]
            if pod.metadata.HasField("deletion_timestamp"):
                if ordered:
                    return
                continue
            if ordered and any(not _healthy(members[j]) for j in members if j != i and j < replicas):
                return
            await self._delete(key, sts, pod, f"scaled down: {pod_name(name, i)}")
            if ordered:
                return
        if not rolling or any(i not in members for i in range(replicas)):
            return
        budget = scaled_value(sts.spec.update_strategy.rolling_update.max_unavailable, replicas, round_up=False)
        view = {
            i: Member(
                i,
                p.metadata.labels.get(CONTROLLER_REVISION_HASH, ""),
                _healthy(p),
                p.metadata.HasField("deletion_timestamp"),
            )
            for i, p in members.items()
            if i < replicas
        }
        for i in next_to_update(view, replicas, partition, update, max(1, budget)):
            await self._delete(key, sts, members[i], f"rolling update of {members[i].metadata.name} to {update}")

    async def _create(self, key: str, sts: apps_pb2.StatefulSet, ordinal: int, revision: str) -> None:
        template = await self._template_of(sts, revision)
        name, ns = sts.metadata.name, sts.metadata.namespace
        for tmpl in sts.spec.volume_claim_templates:
            await self._ensure_claim(sts, tmpl, ordinal)
        pod = pod_from_template(template, sts, generate_name="", namespace=ns)
        pod.metadata.name = pod_name(name, ordinal)
        pod.metadata.labels[CONTROLLER_REVISION_HASH] = revision
        pod.metadata.labels[POD_NAME_LABEL] = pod.metadata.name
        pod.metadata.labels[POD_INDEX_LABEL] = str(ordinal)
        pod.spec.hostname = pod.metadata.name
        if sts.spec.service_name:
            pod.spec.subdomain = sts.spec.service_name
        claims = {t.metadata.name for t in sts.spec.volume_claim_templates}
        kept = [v for v in pod.spec.volumes if v.name not in claims]
        del pod.spec.volumes[:]
        pod.spec.volumes.extend(kept)
        for tmpl in sts.spec.volume_claim_templates:
            vol = pod.spec.volumes.add(name=tmpl.metadata.name)
            vol.persistent_volume_claim.claim_name = claim_name(tmpl.metadata.name, name, ordinal)
        self.expectations.expect_creations(key, 1)
        try:
            await self.client.create(pod)
        except AlreadyExistsError:
            self.expectations.creation_observed(key)  # the old one is still going: made again once it is gone
            return
        except ApiError as err:
            self.expectations.creation_observed(key)
            self.recorder.event(sts, WARNING, "FailedCreate", f"create Pod {pod.metadata.name} failed: {err.message}")
            raise
        self.recorder.event(
            sts, NORMAL, "SuccessfulCreate", f"create Pod {pod.metadata.name} in StatefulSet {name} successful"
        )

    async def _ensure_claim(
        self, sts: apps_pb2.StatefulSet, tmpl: core_pb2.PersistentVolumeClaim, ordinal: int
    ) -> None:
        ns = sts.metadata.namespace
        cname = claim_name(tmpl.metadata.name, sts.metadata.name, ordinal)
        if self.claims.store.get(f"{ns}/{cname}") is not None:
            return
        pvc = core_pb2.PersistentVolumeClaim(api_version="v1", kind="PersistentVolumeClaim")
        pvc.metadata.name = cname
        pvc.metadata.namespace = ns
        pvc.metadata.labels.update(tmpl.metadata.labels)
        pvc.metadata.labels.update(sts.spec.selector.match_labels)
        pvc.metadata.annotations.update(tmpl.metadata.annotations)
        if sts.spec.persistent_volume_claim_retention_policy.when_deleted == "Delete":
            ref = controller_ref(sts)
            ref.controller = False  # owned, not controlled: the set deletes it with itself, nothing more
            pvc.metadata.owner_references.append(ref)
        pvc.spec.CopyFrom(tmpl.spec)
        try:
            await self.client.create(pvc)
            self.recorder.event(
                sts, NORMAL, "SuccessfulCreate", f"create Claim {cname} for Pod {pod_name(sts.metadata.name, ordinal)}"
            )
        except AlreadyExistsError:
            pass  # the cache lagged, or it outlived an earlier pod: that is the point

    async def _delete(self, key: str, sts: apps_pb2.StatefulSet, pod: core_pb2.Pod, why: str) -> None:
        self.expectations.expect_deletions(key, [pod.metadata.uid])
        try:
            await self.client.delete(core_pb2.Pod, pod.metadata.name, pod.metadata.namespace, uid=pod.metadata.uid)
        except (NotFoundError, ConflictError):
            self.expectations.deletion_observed(key, pod.metadata.uid)
            return
        self.recorder.event(sts, NORMAL, "SuccessfulDelete", f"delete Pod {pod.metadata.name}: {why}")

    async def _retain_claims(self, sts: apps_pb2.StatefulSet, members: dict[int, core_pb2.Pod], replicas: int) -> None:
        if sts.spec.persistent_volume_claim_retention_policy.when_scaled != "Delete":
            return
        ns, name = sts.metadata.namespace, sts.metadata.name
        for tmpl in sts.spec.volume_claim_templates:
            prefix = f"{tmpl.metadata.name}-"
            for pvc in self.claims.store.by_index("namespace", ns):
                rest = pvc.metadata.name[len(prefix) :] if pvc.metadata.name.startswith(prefix) else ""
                ordinal = ordinal_of(name, rest) if rest else None
                if ordinal is None or ordinal < replicas or ordinal in members:
                    continue
                if pvc.metadata.HasField("deletion_timestamp"):
                    continue
                try:
                    await self.client.delete(
                        core_pb2.PersistentVolumeClaim, pvc.metadata.name, ns, uid=pvc.metadata.uid
                    )
                    self.recorder.event(
                        sts, NORMAL, "SuccessfulDelete", f"delete Claim {pvc.metadata.name}: scaled down"
                    )
                except NotFoundError:
                    pass

    # ------------------------------------------------------------ revisions

    async def _update_revision(self, sts: apps_pb2.StatefulSet) -> str:
        """The name of the revision of the current template, its ControllerRevision made if missing."""
        name, ns = sts.metadata.name, sts.metadata.namespace
        digest = template_hash(sts.spec.template, sts.status.collision_count, label=CONTROLLER_REVISION_HASH)
        revision = f"{name}-{digest}"
        data = sts.spec.template.SerializeToString(deterministic=True)
        existing = self.revisions.store.get(f"{ns}/{revision}")
        if existing is not None and existing.data == data:
            return revision
        owned = self.revisions.store.by_index("owner", sts.metadata.uid)
        cr = apps_pb2.ControllerRevision(api_version="apps/v1", kind="ControllerRevision", data=data)
        cr.metadata.name = revision
        cr.metadata.namespace = ns
        cr.metadata.labels.update(sts.spec.selector.match_labels)
        cr.metadata.labels[CONTROLLER_REVISION_HASH] = digest
        cr.metadata.owner_references.append(controller_ref(sts))
        cr.revision = max((r.revision for r in owned), default=0) + 1
        try:
            await self.client.create(cr)
        except AlreadyExistsError:
            stored = await self.client.get(apps_pb2.ControllerRevision, revision, ns)
            if stored.data != data:  # a hash collision: the next collision count gives another name
                bumped = copy(sts)
                bumped.status.collision_count = sts.status.collision_count + 1
                await self.client.update_status(bumped)
                raise ConflictError(f"revision name {revision} collides; trying another") from None
        return revision

    async def _template_of(self, sts: apps_pb2.StatefulSet, revision: str) -> core_pb2.PodTemplateSpec:
        cr = self.revisions.store.get(f"{sts.metadata.namespace}/{revision}")
        if cr is None:
            try:
                cr = await self.client.get(apps_pb2.ControllerRevision, revision, sts.metadata.namespace)
            except NotFoundError:
                return sts.spec.template  # its revision is gone: the current template is the best there is
        template = core_pb2.PodTemplateSpec()
        template.ParseFromString(cr.data)
        return template

    async def _prune_revisions(
        self, sts: apps_pb2.StatefulSet, members: dict[int, core_pb2.Pod], current: str, update: str
    ) -> None:
        limit = sts.spec.revision_history_limit if sts.spec.HasField("revision_history_limit") else 10
        used = {current, update} | {p.metadata.labels.get(CONTROLLER_REVISION_HASH, "") for p in members.values()}
        old = sorted(
            (r for r in self.revisions.store.by_index("owner", sts.metadata.uid) if r.metadata.name not in used),
            key=lambda r: r.revision,
        )
        for r in old[: max(0, len(old) - limit)]:
            with contextlib.suppress(NotFoundError):
                await self.client.delete(apps_pb2.ControllerRevision, r.metadata.name, r.metadata.namespace)

    # --------------------------------------------------------------- status

    async def _update_status(
        self,
        sts: apps_pb2.StatefulSet,
        members: dict[int, core_pb2.Pod],
        replicas: int,
        current: str,
        update: str,
        rolling: bool,
    ) -> None:
        live = [p for p in members.values() if not p.metadata.HasField("deletion_timestamp")]
        status = apps_pb2.StatefulSetStatus(
            observed_generation=sts.metadata.generation,
            replicas=len(live),
            ready_replicas=sum(1 for p in live if _healthy(p)),
            available_replicas=sum(1 for p in live if _healthy(p)),
            current_replicas=sum(1 for p in live if p.metadata.labels.get(CONTROLLER_REVISION_HASH) == current),
            updated_replicas=sum(1 for p in live if p.metadata.labels.get(CONTROLLER_REVISION_HASH) == update),
            current_revision=current,
            update_revision=update,
        )
        if sts.status.HasField("collision_count"):
            status.collision_count = sts.status.collision_count
        status.conditions.extend(sts.status.conditions)
        # The update is complete once every member runs it: it becomes the current revision.
        everyone = status.updated_replicas == replicas
        if everyone and (status.ready_replicas == replicas or not rolling):
            status.current_revision = update
            status.current_replicas = status.updated_replicas
        if status != sts.status:
            sts.status.CopyFrom(status)
            try:
                await self.client.update_status(sts)
            except NotFoundError:
                return
