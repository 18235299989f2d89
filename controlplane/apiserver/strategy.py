"""What differs between kinds: defaults, which fields are status, what may not change.

The registry calls one ``Strategy`` per kind at fixed points; everything else
about a verb is the same for all kinds.
"""

from __future__ import annotations

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from controlplane.api import kinds
from controlplane.api.objects import meta
from controlplane.api.pb import apps_pb2, batch_pb2, core_pb2
from controlplane.api.quantity import parse_quantity
from controlplane.api.validation import Errors

DEFAULT_GRACE_SECONDS = 30


class Strategy:
    """The default behaviour: status is cleared on create and kept by Update."""

    keep_status_on_create = False

    def __init__(self, info: kinds.KindInfo) -> None:
        self.info = info

    def default(self, obj: Message) -> None:
        """Fill in defaults (on create and update, before validation)."""

    def prepare_for_create(self, obj: Message) -> None:
        """Reset what a client may not set on create."""
        if self.info.has_status and not self.keep_status_on_create:
            obj.ClearField("status")
        self.default(obj)

    def prepare_for_update(self, new: Message, old: Message) -> None:
        """Update writes everything but status."""
        if self.info.has_status:
            new.status.CopyFrom(old.status)  # type: ignore[attr-defined]
        self.default(new)

    def prepare_for_status_update(self, new: Message, old: Message) -> None:
        """UpdateStatus writes status only (and labels/annotations are kept from the old object)."""
        status = type(new.status)()  # type: ignore[attr-defined]
        status.CopyFrom(new.status)  # type: ignore[attr-defined]
        new.CopyFrom(old)
        new.status.CopyFrom(status)  # type: ignore[attr-defined]

    def spec_of(self, obj: Message) -> bytes:
        """The bytes whose change bumps metadata.generation."""
        if "spec" in obj.DESCRIPTOR.fields_by_name:
            return obj.spec.SerializeToString(deterministic=True)  # type: ignore[attr-defined, no-any-return]
        return b""

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        """Rules that compare with the stored object (immutable fields)."""

    def graceful_delete_seconds(self, obj: Message, requested: int | None) -> int:
        """Seconds the object lingers with deletionTimestamp before removal; 0 deletes at once."""
        return 0


# ---------------------------------------------------------------------- pods


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


class PodStrategy(Strategy):
    """Pods: spec mostly immutable, nodeName set once, graceful delete."""

    def default(self, obj: Message) -> None:
        default_pod_spec(obj.spec)  # type: ignore[attr-defined]

    def prepare_for_create(self, obj: Message) -> None:
        super().prepare_for_create(obj)
        pod: core_pb2.Pod = obj  # type: ignore[assignment]
        pod.status.phase = "Pending"
        pod.status.qos_class = qos_class(pod.spec)

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        n: core_pb2.Pod = new  # type: ignore[assignment]
        o: core_pb2.Pod = old  # type: ignore[assignment]
        if o.spec.node_name and n.spec.node_name != o.spec.node_name:
            errs.add("spec.nodeName", f"may not be changed once set (is {o.spec.node_name!r})")
        # Everything else in spec is immutable except activeDeadlineSeconds and added tolerations.
        a, b = core_pb2.PodSpec(), core_pb2.PodSpec()
        a.CopyFrom(n.spec)
        b.CopyFrom(o.spec)
        for spec in (a, b):
            spec.node_name = ""
            spec.ClearField("active_deadline_seconds")
            del spec.tolerations[:]
        if a != b:
            changed = sorted(f.json_name for f in a.DESCRIPTOR.fields if getattr(a, f.name) != getattr(b, f.name))
            errs.add(
                "spec",
                f"pod updates may not change fields other than activeDeadlineSeconds, tolerations (additions) and "
                f"an unset nodeName; changed: {', '.join(changed)}",
            )
        old_tols = [t.SerializeToString(deterministic=True) for t in o.spec.tolerations]
        new_tols = [t.SerializeToString(deterministic=True) for t in n.spec.tolerations]
        if any(t not in new_tols for t in old_tols):
            errs.add("spec.tolerations", "existing tolerations may not be removed or changed")

    def graceful_delete_seconds(self, obj: Message, requested: int | None) -> int:
        pod: core_pb2.Pod = obj  # type: ignore[assignment]
        # Nothing runs for a pod that is unscheduled or finished: delete at once.
        if not pod.spec.node_name or pod.status.phase in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(0, requested)
        return int(pod.spec.termination_grace_period_seconds)


# ----------------------------------------------------------------- workloads


def _percent(text: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=text)


class ReplicaSetStrategy(Strategy):
    """ReplicaSets: replicas default 1; the selector is immutable."""

    def default(self, obj: Message) -> None:
        rs: apps_pb2.ReplicaSet = obj  # type: ignore[assignment]
        if not rs.spec.HasField("replicas"):
            rs.spec.replicas = 1
        default_pod_spec(rs.spec.template.spec)

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        if new.spec.selector != old.spec.selector:  # type: ignore[attr-defined]
            errs.add("spec.selector", "field is immutable")


class DeploymentStrategy(ReplicaSetStrategy):
    """Deployments: Kubernetes' rolling-update defaults."""

    def default(self, obj: Message) -> None:
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


class DaemonSetStrategy(ReplicaSetStrategy):
    """DaemonSets: RollingUpdate with maxUnavailable 1 by default."""

    def default(self, obj: Message) -> None:
        ds: apps_pb2.DaemonSet = obj  # type: ignore[assignment]
        us = ds.spec.update_strategy
        us.type = us.type or "RollingUpdate"
        if us.type == "RollingUpdate" and not us.rolling_update.HasField("max_unavailable"):
            us.rolling_update.max_unavailable.CopyFrom(struct_pb2.Value(number_value=1))
        if not ds.spec.HasField("revision_history_limit"):
            ds.spec.revision_history_limit = 10
        default_pod_spec(ds.spec.template.spec)


class JobStrategy(Strategy):
    """Jobs: parallelism/completions/backoffLimit defaults, generated selector, immutable template."""

    def default(self, obj: Message) -> None:
        job: batch_pb2.Job = obj  # type: ignore[assignment]
        spec = job.spec
        if not spec.HasField("completions") and not spec.HasField("parallelism"):
            spec.completions = 1
        if not spec.HasField("parallelism"):
            spec.parallelism = 1
        if not spec.HasField("backoff_limit"):
            spec.backoff_limit = 6
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

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        n: batch_pb2.Job = new  # type: ignore[assignment]
        o: batch_pb2.Job = old  # type: ignore[assignment]
        if n.spec.selector != o.spec.selector:
            errs.add("spec.selector", "field is immutable")
        if n.spec.template != o.spec.template:
            errs.add("spec.template", "field is immutable")
        if n.spec.completions != o.spec.completions:
            errs.add("spec.completions", "field is immutable")


# ------------------------------------------------------------- other kinds


class ServiceStrategy(Strategy):
    """Services: ClusterIP type, TCP, targetPort = port by default; clusterIP immutable."""

    def default(self, obj: Message) -> None:
        svc: core_pb2.Service = obj  # type: ignore[assignment]
        svc.spec.type = svc.spec.type or "ClusterIP"
        svc.spec.session_affinity = svc.spec.session_affinity or "None"
        for port in svc.spec.ports:
            port.protocol = port.protocol or "TCP"
            if not port.HasField("target_port"):
                port.target_port.number_value = port.port
        if svc.spec.cluster_ip and not svc.spec.cluster_ips:
            svc.spec.cluster_ips.append(svc.spec.cluster_ip)

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        n, o = new.spec.cluster_ip, old.spec.cluster_ip  # type: ignore[attr-defined]
        if o and n != o:
            errs.add("spec.clusterIP", f"field is immutable (is {o!r})")


class ConfigDataStrategy(Strategy):
    """ConfigMaps and Secrets: ``immutable: true`` freezes the data."""

    def default(self, obj: Message) -> None:
        if isinstance(obj, core_pb2.Secret):
            obj.type = obj.type or "Opaque"
            for key, value in obj.string_data.items():
                obj.data[key] = value.encode()
            obj.string_data.clear()

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        if old.immutable:  # type: ignore[attr-defined]
            if not new.immutable:  # type: ignore[attr-defined]
                errs.add("immutable", "field is immutable when `immutable` is set")
            if new.data != old.data:  # type: ignore[attr-defined]
                errs.add("data", "field is immutable when `immutable` is set")
            if isinstance(new, core_pb2.ConfigMap) and new.binary_data != old.binary_data:  # type: ignore[attr-defined]
                errs.add("binaryData", "field is immutable when `immutable` is set")
        if isinstance(new, core_pb2.Secret) and new.type != old.type:  # type: ignore[attr-defined]
            errs.add("type", "field is immutable")


class NodeStrategy(Strategy):
    """Nodes: the agent registers its Node with status included (as kubelets do)."""

    keep_status_on_create = True


class NamespaceStrategy(Strategy):
    """Namespaces: phase Active on create."""

    def prepare_for_create(self, obj: Message) -> None:
        super().prepare_for_create(obj)
        obj.status.phase = "Active"  # type: ignore[attr-defined]


_STRATEGIES: dict[str, type[Strategy]] = {
    "Pod": PodStrategy,
    "ReplicaSet": ReplicaSetStrategy,
    "Deployment": DeploymentStrategy,
    "DaemonSet": DaemonSetStrategy,
    "Job": JobStrategy,
    "Service": ServiceStrategy,
    "ConfigMap": ConfigDataStrategy,
    "Secret": ConfigDataStrategy,
    "Node": NodeStrategy,
    "Namespace": NamespaceStrategy,
}


def for_kind(info: kinds.KindInfo) -> Strategy:
    """The strategy of a kind."""
    return _STRATEGIES.get(info.kind, Strategy)(info)
