"""DaemonSet controller: one pod on every node that the template's node selection admits and whose
NoSchedule/NoExecute taints it tolerates; a rolling update replaces old pods node by node.

reconcile(ns/name):
    for each node:  should run & no pod ──> create one bound to the node (spec.nodeName)
                    pod failed ──> delete it (the next sync makes a new one)
                    more than one ──> delete the newer ones;   should not run ──> delete its pod
    RollingUpdate: pods of an older template are deleted while at most maxUnavailable desired nodes lack an
    available pod (unavailable old pods go first, at no cost). OnDelete: old pods stay until deleted by hand.

Daemon pods tolerate the not-ready/unreachable NoExecute taints (they belong to the node, as in
Kubernetes) and ignore cordoning. The template's hash is the ``controller-revision-hash`` label.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

from controlplane.api.errors import ApiError, NotFoundError
from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.api.placement import TAINT_NOT_READY, TAINT_UNREACHABLE, pod_matches_node_selection, untolerated
from controlplane.api.selectors import from_label_selector_message
from controlplane.client.events import NORMAL, WARNING
from controlplane.client.indexer import object_key
from controlplane.controllers.base import Controller, ControllerContext, copy
from controlplane.controllers.expectations import Expectations
from controlplane.controllers.intstr import scaled_value
from controlplane.controllers.ownedpods import OwnedPodEvents
from controlplane.controllers.ownership import claim, claim_candidates
from controlplane.controllers.podcontrol import (
    CONTROLLER_REVISION_HASH,
    pod_from_template,
    pod_is_available,
    pod_is_ready,
    template_hash,
)

HASH_LABEL = CONTROLLER_REVISION_HASH


def daemon_pod_template(ds: apps_pb2.DaemonSet) -> core_pb2.PodTemplateSpec:
    """The template with the tolerations every daemon pod gets and the revision label."""
    t = copy(ds.spec.template)
    for key in (TAINT_NOT_READY, TAINT_UNREACHABLE):
        if not any(tol.key == key for tol in t.spec.tolerations):
            t.spec.tolerations.add(key=key, operator="Exists", effect="NoExecute")
    t.metadata.labels[HASH_LABEL] = template_hash(ds.spec.template, label=HASH_LABEL)
    return t


def should_run(template: core_pb2.PodTemplateSpec, node: core_pb2.Node, *, running: bool = False) -> bool:
    """Whether a daemon pod belongs on this node. A pod already ``running`` there stays despite NoSchedule
    taints (they keep new pods away; only NoExecute evicts)."""
    if node.metadata.HasField("deletion_timestamp"):
        return False
    pod = core_pb2.Pod(spec=template.spec)
    if not pod_matches_node_selection(pod, node):
        return False
    effects = ("NoExecute",) if running else ("NoSchedule", "NoExecute")
    return not untolerated(template.spec.tolerations, node.spec.taints, effects)


class DaemonSetController(Controller):
    """Keeps one pod per eligible node for each DaemonSet."""

    name: ClassVar[str] = "daemonset"
    default_workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.sets = ctx.informers.informer(apps_pb2.DaemonSet)
        self.nodes = ctx.informers.informer(core_pb2.Node)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.expectations = Expectations(ctx.config.expectations_timeout)
        self.sets.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.nodes.add_event_handler(self._node_changed, self._node_updated, self._node_changed)
        events = OwnedPodEvents(self.sets, "DaemonSet", self.expectations, self.queue)
        self.pods.add_event_handler(events.added, events.updated, events.deleted)

    def _all(self) -> None:
        for ds in self.sets.store.objects():
            self.enqueue(ds)

    def _node_changed(self, node: core_pb2.Node) -> None:
        self._all()

    def _node_updated(self, old: core_pb2.Node, new: core_pb2.Node) -> None:
        # Only what decides placement matters, not the heartbeat-driven status.
        placement_changed = old.metadata.labels != new.metadata.labels or old.spec.taints != new.spec.taints
        if placement_changed or old.metadata.deletion_timestamp != new.metadata.deletion_timestamp:
            self._all()

    async def reconcile(self, key: str) -> None:
        cached = self.sets.store.get(key)
        if cached is None:
            self.expectations.forget(key)
            return
        ds = copy(cached)
        selector = from_label_selector_message(ds.spec.selector)
        candidates = claim_candidates(self.pods.store, ds)
        pods = await claim(self.client, ds, candidates, lambda p: selector.matches(p.metadata.labels))
        template = daemon_pod_template(ds)
        current_hash = template.metadata.labels[HASH_LABEL]
        nodes = {n.metadata.name: n for n in self.nodes.store.objects()}
        by_node: dict[str, list[core_pb2.Pod]] = {}
        for p in pods:
            if not p.metadata.HasField("deletion_timestamp"):
                by_node.setdefault(p.spec.node_name, []).append(p)
        now = self.ctx.now().timestamp()
        to_create: list[str] = []
        to_delete: list[core_pb2.Pod] = []
        desired = [name for name, node in nodes.items() if should_run(template, node, running=bool(by_node.get(name)))]
        for name in desired:
            running = [p for p in by_node.get(name, []) if p.status.phase != "Failed"]
            to_delete.extend(p for p in by_node.get(name, []) if p.status.phase == "Failed")
            if not running:
                to_create.append(name)
            elif len(running) > 1:
                running.sort(key=lambda p: p.metadata.creation_timestamp.ToNanoseconds())
                to_delete.extend(running[1:])
        for name, node_pods in by_node.items():
            if name not in desired:
                to_delete.extend(node_pods)  # node gone, relabelled or tainted against us
        if (
            ds.spec.update_strategy.type != "OnDelete"
            and not to_create
            and not to_delete
            and self.expectations.satisfied(key)
        ):
            to_delete.extend(self._rolling_victims(ds, desired, by_node, current_hash, now))
        error: ApiError | None = None
        if self.expectations.satisfied(key) and not ds.metadata.HasField("deletion_timestamp"):
            try:
                await self._apply(key, ds, template, to_create, to_delete, nodes)
            except ApiError as err:
                error = err
        await self._update_status(ds, desired, by_node, current_hash, now)
        if error is not None:
            raise error

    def _rolling_victims(
        self,
        ds: apps_pb2.DaemonSet,
        desired: list[str],
        by_node: dict[str, list[core_pb2.Pod]],
        current_hash: str,
        now: float,
    ) -> list[core_pb2.Pod]:
        max_unavailable = max(
            1, scaled_value(ds.spec.update_strategy.rolling_update.max_unavailable, len(desired), round_up=True)
        )
        unavailable = 0
        old_unavailable: list[core_pb2.Pod] = []
        old_available: list[core_pb2.Pod] = []
        for name in desired:
            pods = by_node.get(name, [])
            available = any(pod_is_available(p, ds.spec.min_ready_seconds, now) for p in pods)
            if not available:
                unavailable += 1
            for p in pods:
                if p.metadata.labels.get(HASH_LABEL) != current_hash:
                    (old_available if available else old_unavailable).append(p)
        budget = max(0, max_unavailable - unavailable)
        return old_unavailable + old_available[:budget]

    async def _apply(
        self,
        key: str,
        ds: apps_pb2.DaemonSet,
        template: core_pb2.PodTemplateSpec,
        to_create: list[str],
        to_delete: list[core_pb2.Pod],
        nodes: dict[str, core_pb2.Node],
    ) -> None:
        to_create = to_create[: self.config.burst_replicas]
        to_delete = to_delete[: self.config.burst_replicas]
        self.expectations.expect_creations(key, len(to_create))
        self.expectations.expect_deletions(key, [p.metadata.uid for p in to_delete])
        first_error: ApiError | None = None
        for name in to_create:
            pod = pod_from_template(template, ds, generate_name=f"{ds.metadata.name}-", namespace=ds.metadata.namespace)
            pod.spec.node_name = name
            try:
                created = await self.client.create(pod)
                self.recorder.event(ds, NORMAL, "SuccessfulCreate", f"Created pod: {created.metadata.name} on {name}")
            except ApiError as err:
                self.expectations.creation_observed(key)
                self.recorder.event(ds, WARNING, "FailedCreate", f"Error creating a pod on {name}: {err.message}")
                first_error = first_error or err
        for p in to_delete:
            # A pod whose node is gone has no agent to finish a graceful deletion: remove it at once.
            grace = 0 if p.spec.node_name not in nodes else None
            try:
                await self.client.delete(
                    core_pb2.Pod, p.metadata.name, p.metadata.namespace, uid=p.metadata.uid, grace_period_seconds=grace
                )
                self.recorder.event(ds, NORMAL, "SuccessfulDelete", f"Deleted pod: {p.metadata.name}")
            except NotFoundError:
                self.expectations.deletion_observed(key, p.metadata.uid)
            except ApiError as err:
                self.expectations.deletion_observed(key, p.metadata.uid)
                first_error = first_error or err
        if first_error is not None:
            raise first_error

    async def _update_status(
        self,
        ds: apps_pb2.DaemonSet,
        desired: list[str],
        by_node: dict[str, list[core_pb2.Pod]],
        current_hash: str,
        now: float,
    ) -> None:
        scheduled = [n for n in desired if by_node.get(n)]
        status = apps_pb2.DaemonSetStatus(
            desired_number_scheduled=len(desired),
            current_number_scheduled=len(scheduled),
            number_misscheduled=sum(1 for n, pods in by_node.items() if n not in desired and pods),
            number_ready=sum(1 for n in desired if any(pod_is_ready(p) for p in by_node.get(n, []))),
            number_available=sum(
                1
                for n in desired
                if any(pod_is_available(p, ds.spec.min_ready_seconds, now) for p in by_node.get(n, []))
            ),
            updated_number_scheduled=sum(
                1 for n in desired if any(p.metadata.labels.get(HASH_LABEL) == current_hash for p in by_node.get(n, []))
            ),
            observed_generation=ds.metadata.generation,
        )
        status.number_unavailable = status.desired_number_scheduled - status.number_available
        status.conditions.extend(ds.status.conditions)
        if status != ds.status:
            ds.status.CopyFrom(status)
            with contextlib.suppress(NotFoundError):
                await self.client.update_status(ds)
        if status.number_ready > status.number_available and ds.spec.min_ready_seconds:
            self.queue.add_after(object_key(ds), 1.0)
