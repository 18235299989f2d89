"""The horizontal pod autoscaler: sets a Deployment's, StatefulSet's or ReplicaSet's ``spec.replicas`` from
what its pods use (the metrics API: ``Api.ListPodMetrics``).

``reconcile(hpa)`` runs when the HPA changes and every ``hpa_sync_period`` seconds: it reads the target's
replicas and selector, the selected Running pods (those being deleted left out) and their metrics, asks
each metric for a proposal (``podautoscalerutil``), stabilizes and rate-limits the largest one within
``minReplicas``..``maxReplicas``, writes the new count into the target when it differs, and records why in
the HPA's status (``currentMetrics``, ``desiredReplicas``, conditions AbleToScale, ScalingActive,
ScalingLimited) and an Event (SuccessfulRescale). A target at 0 replicas is left alone (scaling disabled, as
Kubernetes). Without metrics for any pod nothing changes and ScalingActive is False (FailedGetResourceMetric).

The recommendations and scale events the stabilization window and policies weigh are kept in memory per
HPA (a restarted or new leader starts afresh, as kube-controller-manager does).
"""

from __future__ import annotations

import collections
import contextlib
import datetime
from typing import Any, ClassVar

from google.protobuf.message import Message

from controlplane.api.conditions import new_condition, set_condition
from controlplane.api.errors import ApiError, ConflictError, NotFoundError
from controlplane.api.pb import apps_pb2, autoscaling_pb2, core_pb2
from controlplane.api.quantity import parse_quantity
from controlplane.api.selectors import from_label_selector_message, selector_text
from controlplane.client.events import NORMAL, WARNING
from controlplane.controllers.base import Controller, ControllerContext, copy
from controlplane.controllers.podautoscalerutil import (
    DEFAULT_SCALE_UP,
    MissingRequest,
    PodSample,
    Policy,
    Proposal,
    Recommendation,
    Rules,
    ScaleEvent,
    average_value_proposal,
    decide,
    default_scale_down,
    utilization_proposal,
)

_TARGETS: dict[str, type[Message]] = {
    "Deployment": apps_pb2.Deployment,
    "StatefulSet": apps_pb2.StatefulSet,
    "ReplicaSet": apps_pb2.ReplicaSet,
}
HISTORY_SECONDS = 3600


def _rules(rules: autoscaling_pb2.HPAScalingRules, default: Rules) -> Rules:
    window = rules.stabilization_window_seconds if rules.HasField("stabilization_window_seconds") else default.window
    policies = tuple(Policy(p.type, p.value, p.period_seconds) for p in rules.policies) or default.policies
    return Rules(window, rules.select_policy or default.select, policies)


def _requests(pod: core_pb2.Pod, resource: str) -> float:
    total = 0.0
    for c in pod.spec.containers:
        text = c.resources.requests.get(resource)
        if not text:
            return 0.0  # one container without a request: the pod's utilization is undefined
        total += float(parse_quantity(text))
    return total


def _usage(metrics: Any, resource: str) -> float | None:
    total = 0.0
    for c in metrics.containers:
        text = c.usage.get(resource)
        if text is None:
            return None  # no rate yet (its first sample)
        total += float(parse_quantity(text))
    return total


class HorizontalPodAutoscalerController(Controller):
    """Scales workloads on their pods' CPU and memory."""

    name: ClassVar[str] = "horizontal-pod-autoscaler"
    default_workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.hpas = ctx.informers.informer(autoscaling_pb2.HorizontalPodAutoscaler)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.hpas.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), self._forget)
        self._recommendations: dict[str, collections.deque[Recommendation]] = {}
        self._events: dict[str, collections.deque[ScaleEvent]] = {}

    def _forget(self, hpa: autoscaling_pb2.HorizontalPodAutoscaler) -> None:
        key = f"{hpa.metadata.namespace}/{hpa.metadata.name}"
        self._recommendations.pop(key, None)
        self._events.pop(key, None)

    async def reconcile(self, key: str) -> None:
        cached = self.hpas.store.get(key)
        if cached is None or cached.metadata.HasField("deletion_timestamp"):
            return
        try:
            await self._sync(key, copy(cached))
        finally:
            self.queue.add_after(key, self.config.hpa_sync_period)

    async def _sync(self, key: str, hpa: autoscaling_pb2.HorizontalPodAutoscaler) -> None:
        ns, spec = hpa.metadata.namespace, hpa.spec
        ref = spec.scale_target_ref
        now = self.ctx.now()
        conditions = list(hpa.status.conditions)
        message_type = _TARGETS.get(ref.kind)
        target: Any = None
        if message_type is not None:
            try:
                target = await self.client.get(message_type, ref.name, ns)
            except NotFoundError:
                target = None
        if target is None:
            reason = (
                f'the HPA controller was unable to get the target\'s current scale: {ref.kind} "{ref.name}" not found'
            )
            conditions = set_condition(conditions, new_condition("AbleToScale", "False", "FailedGetScale", reason, now))
            await self._write_status(hpa, conditions, hpa.status.current_replicas, hpa.status.desired_replicas, [])
            return
        assert message_type is not None
        current = int(target.spec.replicas)
        conditions = set_condition(
            conditions,
            new_condition(
                "AbleToScale",
                "True",
                "SucceededGetScale",
                "the HPA controller was able to get the target's current scale",
                now,
            ),
        )
        if current == 0:
            conditions = set_condition(
                conditions,
                new_condition(
                    "ScalingActive",
                    "False",
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                    now,
                ),
            )
            await self._write_status(hpa, conditions, 0, 0, [])
            return
        selector = from_label_selector_message(target.spec.selector)
        pods = {
            p.metadata.name: p
            for p in self.pods.store.by_index("namespace", ns)
            if selector.matches(p.metadata.labels)
            and p.status.phase == "Running"
            and not p.metadata.HasField("deletion_timestamp")
        }
        failure = "no metrics for the target's pods yet"
        try:
            listed = await self.client.pod_metrics(ns, label_selector=selector_text(target.spec.selector))
        except ApiError as err:
            listed = None
            failure = f"unable to get metrics for resource: {err.message}"
        by_pod = {m.metadata.name: m for m in listed.items} if listed is not None else {}
        proposals: list[tuple[Proposal, str]] = []
        statuses: list[autoscaling_pb2.MetricStatus] = []
        for metric in spec.metrics:
            resource, mt = metric.resource.name, metric.resource.target
            samples = []
            for pod_name, pod in pods.items():
                used = _usage(by_pod[pod_name], resource) if pod_name in by_pod else None
                if used is not None:
                    samples.append(PodSample(used, _requests(pod, resource)))
            if not samples:
                failure = (
                    f"did not receive metrics for targeted pods (pods might be unready): no {resource} metrics yet"
                )
                continue
            try:
                if mt.type == "Utilization":
                    proposal = utilization_proposal(current, samples, mt.average_utilization, self.config.hpa_tolerance)
                    status = autoscaling_pb2.MetricValueStatus(average_utilization=round(proposal.current))
                    status.average_value = _quantity(resource, sum(s.usage for s in samples) / len(samples))
                else:
                    target_value = float(parse_quantity(mt.average_value))
                    proposal = average_value_proposal(current, samples, target_value, self.config.hpa_tolerance)
                    status = autoscaling_pb2.MetricValueStatus(average_value=_quantity(resource, proposal.current))
            except MissingRequest:
                failure = f"failed to get {resource} utilization: missing request for {resource} in the target's pods"
                continue
            proposals.append(
                (
                    proposal,
                    f"{resource} resource{' utilization (percentage of request)' if mt.type == 'Utilization' else ''}",
                )
            )
            statuses.append(
                autoscaling_pb2.MetricStatus(
                    type="Resource", resource=autoscaling_pb2.ResourceMetricStatus(name=resource, current=status)
                )
            )
        if not proposals:
            conditions = set_condition(
                conditions, new_condition("ScalingActive", "False", "FailedGetResourceMetric", failure, now)
            )
            self.recorder.event(hpa, WARNING, "FailedGetResourceMetric", failure)
            await self._write_status(hpa, conditions, current, hpa.status.desired_replicas or current, statuses)
            return
        conditions = set_condition(
            conditions,
            new_condition(
                "ScalingActive",
                "True",
                "ValidMetricFound",
                f"the HPA was able to successfully calculate a replica count from {proposals[0][1]}",
                now,
            ),
        )
        best, why = max(proposals, key=lambda p: p[0].replicas)
        clock = self.ctx.monotonic()
        history = self._recommendations.setdefault(key, collections.deque())
        events = self._events.setdefault(key, collections.deque())
        while history and clock - history[0].at > HISTORY_SECONDS:
            history.popleft()
        while events and clock - events[0].at > HISTORY_SECONDS:
            events.popleft()
        up = _rules(spec.behavior.scale_up, DEFAULT_SCALE_UP)
        down = _rules(spec.behavior.scale_down, default_scale_down(self.config.hpa_downscale_stabilization))
        minimum = spec.min_replicas if spec.HasField("min_replicas") else 1
        decision = decide(
            current,
            best.replicas,
            minimum=minimum,
            maximum=spec.max_replicas,
            history=list(history),
            events=list(events),
            now=clock,
            up=up,
            down=down,
        )
        history.append(Recommendation(clock, best.replicas))
        if decision.limited:
            conditions = set_condition(
                conditions,
                new_condition(
                    "ScalingLimited",
                    "True",
                    decision.limited,
                    f"the desired replica count is limited ({decision.limited})",
                    now,
                ),
            )
        else:
            conditions = set_condition(
                conditions,
                new_condition(
                    "ScalingLimited",
                    "False",
                    "DesiredWithinRange",
                    "the desired count is within the acceptable range",
                    now,
                ),
            )
        scaled = False
        if decision.replicas != current:
            try:
                await self._scale(message_type, ref.name, ns, decision.replicas)
            except ConflictError:
                return  # the target changed meanwhile: the next sync reads it again
            direction = "above" if decision.replicas > current else "below"
            self.recorder.event(
                hpa, NORMAL, "SuccessfulRescale", f"New size: {decision.replicas}; reason: {why} {direction} target"
            )
            events.append(ScaleEvent(clock, decision.replicas - current))
            scaled = True
        await self._write_status(
            hpa, conditions, current, decision.replicas, statuses, scaled_at=now if scaled else None
        )

    async def _scale(self, kind: type[Message], name: str, namespace: str, replicas: int) -> None:
        for _ in range(3):
            obj: Any = await self.client.get(kind, name, namespace)
            obj.spec.replicas = replicas
            try:
                await self.client.update(obj)
                return
            except ConflictError:
                continue
        raise ConflictError(f"{name}: changed three times while scaling")

    async def _write_status(
        self,
        hpa: autoscaling_pb2.HorizontalPodAutoscaler,
        conditions: list[Any],
        current: int,
        desired: int,
        metrics: list[autoscaling_pb2.MetricStatus],
        *,
        scaled_at: datetime.datetime | None = None,
    ) -> None:
        status = autoscaling_pb2.HorizontalPodAutoscalerStatus(
            observed_generation=hpa.metadata.generation, current_replicas=current, desired_replicas=desired
        )
        if hpa.status.HasField("last_scale_time"):
            status.last_scale_time.CopyFrom(hpa.status.last_scale_time)
        if scaled_at is not None:
            status.last_scale_time.FromDatetime(scaled_at)
        status.current_metrics.extend(metrics)
        status.conditions.extend(conditions)
        if status == hpa.status:
            return
        hpa.status.CopyFrom(status)
        with contextlib.suppress(ConflictError, NotFoundError):  # changed or gone: the next sync writes again
            await self.client.update_status(hpa)


def _quantity(resource: str, value: float) -> str:
    if resource == "cpu":
        return f"{round(value * 1000)}m"
    return f"{round(value / 1024)}Ki"
