"""``EvictPod``: Kubernetes' ``pods/eviction`` subresource — a delete that a PodDisruptionBudget may refuse.

The order is Kubernetes' own, so that two evictions racing for the last allowed disruption cannot both win:

1. a pod that is finished (Succeeded/Failed), still Pending, or already being deleted is deleted without
   consulting any budget (it is not serving, so no budget counts it);
2. the budgets in the pod's namespace whose selector matches it are found: none → delete; more than one →
   refused (which one would decide is ambiguous, as Kubernetes says);
3. a budget its controller has not processed since its last change (``observedGeneration`` behind) →
   refused with RESOURCE_EXHAUSTED (HTTP 429: try again);
4. a pod that is not Ready is deleted without spending the budget when the budget is already met
   (``IfHealthyBudget``) or whatever it says (``AlwaysAllow``);
5. otherwise ``status.disruptionsAllowed`` must be above 0: the budget's status is written first — one fewer
   allowed, the pod recorded in ``disruptedPods`` — guarded by its resourceVersion (a racing eviction makes
   this one re-read and decide again), and only then is the pod deleted, with the grace period asked for.
"""

from __future__ import annotations

import datetime

from google.protobuf.message import Message

from controlplane.api import kinds
from controlplane.api.conditions import pod_ready
from controlplane.api.errors import ConflictError, PreconditionError, TooManyRequestsError
from controlplane.api.pb import api_pb2, core_pb2, policy_pb2
from controlplane.api.selectors import from_label_selector_message
from controlplane.apiserver.registry import Registry

_ATTEMPTS = 5


def _matching(pod: core_pb2.Pod, budgets: list[Message]) -> list[policy_pb2.PodDisruptionBudget]:
    out = []
    for b in budgets:
        assert isinstance(b, policy_pb2.PodDisruptionBudget)
        selector = from_label_selector_message(b.spec.selector)
        if not selector.empty and selector.matches(pod.metadata.labels):
            out.append(b)
    return out


async def _delete(
    registry: Registry, namespace: str, request: api_pb2.EvictPodRequest, grace: int | None, uid: str
) -> Message:
    obj, _ = await registry.delete(
        kinds.lookup("Pod"),
        namespace,
        request.name,
        grace_period_seconds=grace,
        precondition_uid=uid,
        dry_run=request.dry_run,
    )
    return obj


async def evict_pod(registry: Registry, request: api_pb2.EvictPodRequest) -> Message:
    """Evict one pod; returns it as deleted. Refusals are ``TooManyRequestsError`` (a budget says no, or has
    not been processed yet) or ``PreconditionError`` (several budgets select the pod)."""
    pod_kind = kinds.lookup("Pod")
    budget_kind = kinds.lookup("PodDisruptionBudget")
    namespace = request.namespace or "default"
    grace = request.grace_period_seconds if request.HasField("grace_period_seconds") else None
    for _ in range(_ATTEMPTS):
        pod = await registry.get(pod_kind, namespace, request.name)
        assert isinstance(pod, core_pb2.Pod)
        uid = request.uid or pod.metadata.uid
        where = f'pod "{namespace}/{request.name}"'
        if request.uid and pod.metadata.uid != request.uid:
            raise ConflictError(f"Precondition failed for {where}: uid is {pod.metadata.uid}, not {request.uid}")

        if pod.status.phase in ("Succeeded", "Failed", "Pending") or pod.metadata.HasField("deletion_timestamp"):
            return await _delete(registry, namespace, request, grace, uid)
        budgets = _matching(pod, (await registry.list(budget_kind, namespace)).items)
        if not budgets:
            return await _delete(registry, namespace, request, grace, uid)
        if len(budgets) > 1:
            names = ", ".join(sorted(b.metadata.name for b in budgets))
            raise PreconditionError(
                f"cannot evict {where}: it has more than one PodDisruptionBudget ({names}), which the eviction "
                "subresource does not support"
            )
        (budget,) = budgets
        name = budget.metadata.name
        if budget.status.observed_generation < budget.metadata.generation:
            raise TooManyRequestsError(
                f"cannot evict {where}: the disruption budget {name} is still being processed by the server; try again"
            )
        if not pod_ready(pod):
            met = budget.status.current_healthy >= budget.status.desired_healthy
            if budget.spec.unhealthy_pod_eviction_policy == "AlwaysAllow" or met:
                return await _delete(registry, namespace, request, grace, uid)
        if budget.status.disruptions_allowed <= 0:
            raise TooManyRequestsError(
                f"Cannot evict {where} as it would violate the pod's disruption budget. The disruption budget "
                f"{name} needs {budget.status.desired_healthy} healthy pods and has "
                f"{budget.status.current_healthy} currently"
            )
        if request.dry_run:
            return await _delete(registry, namespace, request, grace, uid)
        spent = policy_pb2.PodDisruptionBudget()
        spent.CopyFrom(budget)
        spent.status.disruptions_allowed -= 1
        spent.status.disrupted_pods[request.name].FromDatetime(datetime.datetime.now(datetime.UTC))
        try:
            await registry.update(spent, status=True)  # guarded by the resourceVersion just read
        except ConflictError:
            continue  # another eviction (or the controller) changed the budget: decide again
        return await _delete(registry, namespace, request, grace, uid)
    raise TooManyRequestsError(
        f'cannot evict pod "{namespace}/{request.name}": its disruption budget kept changing; try again'
    )
