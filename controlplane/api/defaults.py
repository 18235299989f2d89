"""Kubernetes' defaults for every kind, applied by the API server (and by the CLI before it validates)."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from controlplane.api import kinds
from controlplane.api.objects import meta
from controlplane.api.pb import apps_pb2, autoscaling_pb2, batch_pb2, core_pb2, policy_pb2, scheduling_pb2
from controlplane.api.quantity import parse_quantity

DEFAULT_GRACE_SECONDS = 30


def _default_probe(probe: core_pb2.Probe) -> None:
    probe.timeout_seconds = probe.timeout_seconds or 1
    probe.period_seconds = probe.period_seconds or 10
    probe.success_threshold = probe.success_threshold or 1
    probe.failure_threshold = probe.failure_threshold or 3
    if probe.HasField("http_get"):
        probe.http_get.scheme = probe.http_get.scheme or "HTTP"
        probe.http_get.path = probe.http_get.path or "/"


def default_pod_spec(spec: core_pb2.PodSpec) -> None:
    """Kubernetes' PodSpec defaults (used for Pods and for workload templates)."""
    spec.restart_policy = spec.restart_policy or "Always"
    if not spec.HasField("termination_grace_period_seconds"):
        spec.termination_grace_period_seconds = DEFAULT_GRACE_SECONDS
    spec.scheduler_name = spec.scheduler_name or "default-scheduler"
    if not spec.HasField("enable_service_links"):
        spec.enable_service_links = True
    for c in [*spec.init_containers, *spec.containers]:
        for port in c.ports:
            port.protocol = port.protocol or "TCP"
        for probe in (c.liveness_probe, c.readiness_probe, c.startup_probe):
            if probe.ByteSize():
                _default_probe(probe)
        c.termination_message_path = c.termination_message_path or "/dev/termination-log"
        # A limit without a request requests the limit, as in Kubernetes.
        for name, value in c.resources.limits.items():
            c.resources.requests.setdefault(name, value)


def qos_class(spec: core_pb2.PodSpec) -> str:
    """Guaranteed, Burstable or BestEffort, from requests and limits."""
    containers = list(spec.containers)
    if not any(c.resources.requests or c.resources.limits for c in containers):
        return "BestEffort"
    guaranteed = True
    for c in containers:
        for res in ("cpu", "memory"):
            lim, req = c.resources.limits.get(res), c.resources.requests.get(res)
            if lim is None or (req is not None and _q(req) != _q(lim)):
                guaranteed = False
    return "Guaranteed" if guaranteed else "Burstable"


def _q(text: str) -> object:
    try:
        return parse_quantity(text)
    except ValueError:
        return text


def _percent(text: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=text)


def _default_replicaset(obj: Message) -> None:
    rs: apps_pb2.ReplicaSet = obj  # type: ignore[assignment]
    if not rs.spec.HasField("replicas"):
        rs.spec.replicas = 1
    default_pod_spec(rs.spec.template.spec)


def _default_deployment(obj: Message) -> None:
    d: apps_pb2.Deployment = obj  # type: ignore[assignment]
    if not d.spec.HasField("replicas"):
        d.spec.replicas = 1
    d.spec.strategy.type = d.spec.strategy.type or "RollingUpdate"
    if d.spec.strategy.type == "RollingUpdate":
        ru = d.spec.strategy.rolling_update
        if not ru.HasField("max_surge"):
            ru.max_surge.CopyFrom(_percent("25%"))
        if not ru.HasField("max_unavailable"):
            ru.max_unavailable.CopyFrom(_percent("25%"))
    if not d.spec.HasField("revision_history_limit"):
        d.spec.revision_history_limit = 10
    if not d.spec.HasField("progress_deadline_seconds"):
        d.spec.progress_deadline_seconds = 600
    default_pod_spec(d.spec.template.spec)


def _default_daemonset(obj: Message) -> None:
    ds: apps_pb2.DaemonSet = obj  # type: ignore[assignment]
    us = ds.spec.update_strategy
    us.type = us.type or "RollingUpdate"
    if us.type == "RollingUpdate" and not us.rolling_update.HasField("max_unavailable"):
        us.rolling_update.max_unavailable.CopyFrom(struct_pb2.Value(number_value=1))
    if not ds.spec.HasField("revision_history_limit"):
        ds.spec.revision_history_limit = 10
    default_pod_spec(ds.spec.template.spec)


def _default_job(obj: Message) -> None:
    job: batch_pb2.Job = obj  # type: ignore[assignment]
    spec = job.spec
    if not spec.HasField("completions") and not spec.HasField("parallelism"):
        spec.completions = 1
    if not spec.HasField("parallelism"):
        spec.parallelism = 1
    if not spec.HasField("backoff_limit"):
        # With a budget per index, the Job-wide one is off unless asked for (as Kubernetes).
        spec.backoff_limit = 2**31 - 1 if spec.HasField("backoff_limit_per_index") else 6
    spec.completion_mode = spec.completion_mode or "NonIndexed"
    if not spec.HasField("suspend"):
        spec.suspend = False
    uid = meta(job).uid
    if not spec.manual_selector and uid and not spec.selector.ByteSize():
        # As Kubernetes does: a selector no other object can match.
        spec.selector.match_labels["controller-uid"] = uid
        spec.template.metadata.labels["controller-uid"] = uid
        spec.template.metadata.labels["job-name"] = meta(job).name
    default_pod_spec(spec.template.spec)


def _default_cronjob(obj: Message) -> None:
    cj: batch_pb2.CronJob = obj  # type: ignore[assignment]
    spec = cj.spec
    spec.concurrency_policy = spec.concurrency_policy or "Allow"
    if not spec.HasField("suspend"):
        spec.suspend = False
    if not spec.HasField("successful_jobs_history_limit"):
        spec.successful_jobs_history_limit = 3
    if not spec.HasField("failed_jobs_history_limit"):
        spec.failed_jobs_history_limit = 1
    default_pod_spec(spec.job_template.spec.template.spec)


def _default_pdb(obj: Message) -> None:
    pdb: policy_pb2.PodDisruptionBudget = obj  # type: ignore[assignment]
    pdb.spec.unhealthy_pod_eviction_policy = pdb.spec.unhealthy_pod_eviction_policy or "IfHealthyBudget"


def _default_hpa(obj: Message) -> None:
    hpa: autoscaling_pb2.HorizontalPodAutoscaler = obj  # type: ignore[assignment]
    if not hpa.spec.HasField("min_replicas"):
        hpa.spec.min_replicas = 1
    ref = hpa.spec.scale_target_ref
    if not ref.api_version and ref.kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        ref.api_version = "apps/v1"
    # Behaviour left unsaid keeps Kubernetes' defaults, applied by the controller (so that its
    # --horizontal-pod-autoscaler-downscale-stabilization flag still governs objects that do not say).


def _default_priority_class(obj: Message) -> None:
    pc: scheduling_pb2.PriorityClass = obj  # type: ignore[assignment]
    if not pc.HasField("preemption_policy"):
        pc.preemption_policy = "PreemptLowerPriority"


def _default_claim_spec(spec: core_pb2.PersistentVolumeClaimSpec) -> None:
    spec.volume_mode = spec.volume_mode or "Filesystem"


def _default_pvc(obj: Message) -> None:
    pvc: core_pb2.PersistentVolumeClaim = obj  # type: ignore[assignment]
    _default_claim_spec(pvc.spec)


def _default_pv(obj: Message) -> None:
    pv: core_pb2.PersistentVolume = obj  # type: ignore[assignment]
    pv.spec.persistent_volume_reclaim_policy = pv.spec.persistent_volume_reclaim_policy or "Retain"
    pv.spec.volume_mode = pv.spec.volume_mode or "Filesystem"


def _default_statefulset(obj: Message) -> None:
    sts: apps_pb2.StatefulSet = obj  # type: ignore[assignment]
    spec = sts.spec
    if not spec.HasField("replicas"):
        spec.replicas = 1
    spec.pod_management_policy = spec.pod_management_policy or "OrderedReady"
    us = spec.update_strategy
    us.type = us.type or "RollingUpdate"
    if us.type == "RollingUpdate":
        if not us.rolling_update.HasField("partition"):
            us.rolling_update.partition = 0
        if not us.rolling_update.HasField("max_unavailable"):
            us.rolling_update.max_unavailable.CopyFrom(struct_pb2.Value(number_value=1))
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = 10
    policy = spec.persistent_volume_claim_retention_policy
    policy.when_deleted = policy.when_deleted or "Retain"
    policy.when_scaled = policy.when_scaled or "Retain"
    for claim in spec.volume_claim_templates:
        _default_claim_spec(claim.spec)
    default_pod_spec(spec.template.spec)


def _default_service(obj: Message) -> None:
    svc: core_pb2.Service = obj  # type: ignore[assignment]
    svc.spec.type = svc.spec.type or "ClusterIP"
    svc.spec.session_affinity = svc.spec.session_affinity or "None"
    for port in svc.spec.ports:
        port.protocol = port.protocol or "TCP"
        if not port.HasField("target_port"):
            port.target_port.number_value = port.port
    if svc.spec.cluster_ip and not svc.spec.cluster_ips:
        svc.spec.cluster_ips.append(svc.spec.cluster_ip)


def _default_configdata(obj: Message) -> None:
    if isinstance(obj, core_pb2.Secret):
        obj.type = obj.type or "Opaque"
        for key, value in obj.string_data.items():
            obj.data[key] = value.encode()
        obj.string_data.clear()


def _default_pod(obj: Message) -> None:
    default_pod_spec(obj.spec)  # type: ignore[attr-defined]


_BY_KIND: dict[str, Callable[[Message], None]] = {
    "Pod": _default_pod,
    "ReplicaSet": _default_replicaset,
    "Deployment": _default_deployment,
    "DaemonSet": _default_daemonset,
    "Job": _default_job,
    "CronJob": _default_cronjob,
    "PodDisruptionBudget": _default_pdb,
    "HorizontalPodAutoscaler": _default_hpa,
    "PriorityClass": _default_priority_class,
    "PersistentVolumeClaim": _default_pvc,
    "PersistentVolume": _default_pv,
    "StatefulSet": _default_statefulset,
    "Service": _default_service,
    "ConfigMap": _default_configdata,
    "Secret": _default_configdata,
}


def apply_defaults(obj: Message) -> None:
    """Fill in the kind's defaults in place."""
    fn = _BY_KIND.get(kinds.of_message(obj).kind)
    if fn is not None:
        fn(obj)
