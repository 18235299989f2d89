"""The disruption controller: keeps each PodDisruptionBudget's status true, which is what evictions read.

``reconcile(budget)`` counts the budget's pods (its selector, in its namespace): expected and desired pods
(``disruptionutil``), healthy ones, and ``disruptionsAllowed``; it drops from ``disruptedPods`` the pods whose
deletion it has seen or that were evicted more than two minutes ago (an eviction whose delete never happened
gives its disruption back), and sets the ``DisruptionAllowed`` condition. When the budget needs the
controllers' sizes (a percentage or ``maxUnavailable``) and a selected pod has no scalable controller
(ReplicaSet, Deployment, StatefulSet), the budget allows nothing and says why (SyncFailed), as Kubernetes.

Pods, ReplicaSets and Deployments only queue the budgets of their namespace whose selector matches.
"""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

from controlplane.api.conditions import new_condition, pod_ready, set_condition
from controlplane.api.errors import NotFoundError
from controlplane.api.pb import apps_pb2, core_pb2, policy_pb2
from controlplane.api.selectors import from_label_selector_message
from controlplane.client.indexer import object_key
from controlplane.controllers.base import Controller, ControllerContext, copy
from controlplane.controllers.disruptionutil import DISRUPTED_POD_TIMEOUT, budget, needs_scale
from controlplane.controllers.ownership import controller_of


class DisruptionController(Controller):
    """Computes PodDisruptionBudgets' status."""

    name: ClassVar[str] = "disruption"
    default_workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.budgets = ctx.informers.informer(policy_pb2.PodDisruptionBudget)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.sets = ctx.informers.informer(apps_pb2.ReplicaSet)
        self.deployments = ctx.informers.informer(apps_pb2.Deployment)
        self.budgets.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), None)
        self.pods.add_event_handler(self._pod, lambda old, new: self._pod(old, new), self._pod)
        for inf in (self.sets, self.deployments):
            inf.add_event_handler(self._namespace, lambda old, new: self._namespace(new), self._namespace)

    def _pod(self, *pods: core_pb2.Pod) -> None:
        for budget_obj in self.budgets.store.by_index("namespace", pods[-1].metadata.namespace):
            selector = from_label_selector_message(budget_obj.spec.selector)
            if any(selector.matches(p.metadata.labels) for p in pods):
                self.enqueue(budget_obj)

    def _namespace(self, obj: Any) -> None:
        for budget_obj in self.budgets.store.by_index("namespace", obj.metadata.namespace):
            self.enqueue(budget_obj)

    def _scale_of(self, pod: core_pb2.Pod) -> tuple[str, int] | None:
        """The pod's scalable controller (uid) and the replicas it asks for; None if it has none. A
        Deployment's ReplicaSet counts as the Deployment."""
        ref = controller_of(pod)
        ns = pod.metadata.namespace
        if ref is None or ref.kind != "ReplicaSet":
            return None
        rs = self.sets.store.get(f"{ns}/{ref.name}")
        if rs is None or rs.metadata.uid != ref.uid:
            return None
        owner = controller_of(rs)
        if owner is None or owner.kind != "Deployment":
            return rs.metadata.uid, rs.spec.replicas
        d = self.deployments.store.get(f"{ns}/{owner.name}")
        if d is None or d.metadata.uid != owner.uid:
            return None
        return d.metadata.uid, d.spec.replicas

    async def reconcile(self, key: str) -> None:
        cached = self.budgets.store.get(key)
        if cached is None or cached.metadata.HasField("deletion_timestamp"):
            return
        pdb = copy(cached)
        ns = pdb.metadata.namespace
        selector = from_label_selector_message(pdb.spec.selector)
        pods = [
            p
            for p in self.pods.store.by_index("namespace", ns)
            if not selector.empty and selector.matches(p.metadata.labels)
        ]
        live = {p.metadata.name: p for p in pods if not p.metadata.HasField("deletion_timestamp")}
        now = self.ctx.now()
        status = policy_pb2.PodDisruptionBudgetStatus(observed_generation=pdb.metadata.generation)
        soonest: float | None = None
        for name, when in pdb.status.disrupted_pods.items():
            age = (now - when.ToDatetime(datetime.UTC)).total_seconds()
            if name in live and age < DISRUPTED_POD_TIMEOUT:
                status.disrupted_pods[name].CopyFrom(when)
                left = DISRUPTED_POD_TIMEOUT - age
                soonest = left if soonest is None else min(soonest, left)
        if soonest is not None:
            self.queue.add_after(key, soonest + 0.1)
        healthy = sum(1 for p in live.values() if pod_ready(p) and p.metadata.name not in status.disrupted_pods)
        min_available = pdb.spec.min_available if pdb.spec.HasField("min_available") else None
        max_unavailable = pdb.spec.max_unavailable if pdb.spec.HasField("max_unavailable") else None
        failure = ""
        scale = 0
        if needs_scale(min_available, max_unavailable):
            sizes: dict[str, int] = {}
            for p in live.values():
                size = self._scale_of(p)
                if size is None:
                    failure = (
                        f"pod {p.metadata.name} has no controller whose size the budget could count "
                        "(a ReplicaSet, Deployment or StatefulSet): use an integer minAvailable"
                    )
                    break
                sizes[size[0]] = size[1]
            scale = sum(sizes.values())
        numbers = budget(min_available, max_unavailable, len(live), scale, healthy)
        status.current_healthy = healthy
        status.desired_healthy = numbers.desired
        status.expected_pods = numbers.expected
        status.disruptions_allowed = 0 if failure else numbers.allowed
        stamp = now.replace(microsecond=0)
        if failure:
            cond = new_condition("DisruptionAllowed", "False", "SyncFailed", failure, stamp)
        elif status.disruptions_allowed > 0:
            cond = new_condition("DisruptionAllowed", "True", "SufficientPods", "", stamp)
        else:
            cond = new_condition("DisruptionAllowed", "False", "InsufficientPods", "", stamp)
        status.conditions.extend(set_condition(pdb.status.conditions, cond))
        if _same(status, pdb.status):
            return
        pdb.status.CopyFrom(status)
        try:
            await self.client.update_status(pdb)
        except NotFoundError:
            return

    def enqueue(self, obj: Any) -> None:
        self.queue.add(object_key(obj))


def _same(a: policy_pb2.PodDisruptionBudgetStatus, b: policy_pb2.PodDisruptionBudgetStatus) -> bool:
    """Equal apart from the conditions' timestamps (a rewrite of those alone is not a change)."""
    x, y = policy_pb2.PodDisruptionBudgetStatus(), policy_pb2.PodDisruptionBudgetStatus()
    x.CopyFrom(a)
    y.CopyFrom(b)
    for s in (x, y):
        for c in s.conditions:
            c.ClearField("last_transition_time")
            c.ClearField("last_update_time")
            c.ClearField("last_probe_time")
    return x == y
