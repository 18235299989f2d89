"""What differs between kinds: defaults, which fields are status, what may not change.

The registry calls one ``Strategy`` per kind at fixed points; everything else
about a verb is the same for all kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf.message import Message

from controlplane.api import kinds, namespaces
from controlplane.api.defaults import apply_defaults, qos_class
from controlplane.api.errors import ForbiddenError, InvalidError
from controlplane.api.objects import meta
from controlplane.api.pb import apps_pb2, batch_pb2, core_pb2
from controlplane.api.validation import Errors
from controlplane.apiserver.admission import add_default_tolerations
from controlplane.apiserver.allocator import ServiceAllocator, claims_of
from controlplane.storage import Store

DEFAULT_GRACE_SECONDS = 30


@dataclass(frozen=True)
class StrategyOptions:
    """Server flags that some kinds' strategies read."""

    event_ttl_seconds: int = 3600
    """How long an Event lives after its last write (``--event-ttl``); etcd deletes it on its own."""
    not_ready_toleration_seconds: int = 30
    """Default toleration of the not-ready NoExecute taint given to new Pods."""
    unreachable_toleration_seconds: int = 30
    """Default toleration of the unreachable NoExecute taint given to new Pods."""


@dataclass(frozen=True)
class StoreContext:
    """What a strategy may use to store an object or decide on its deletion."""

    store: Store
    allocator: ServiceAllocator
    cached: Callable[[str], list[Message]]
    """Every cached object of a kind (by kind name): a hint, etcd decides."""


PROTECTED_NAMESPACES = namespaces.PROTECTED


class Strategy:
    """The default behaviour: status is cleared on create and kept by Update."""

    keep_status_on_create = False

    def __init__(self, info: kinds.KindInfo, options: StrategyOptions | None = None) -> None:
        self.info = info
        self.options = options or StrategyOptions()

    graceful = False
    """Deletion waits ``graceful_delete_seconds`` with a deletionTimestamp in the future (Pods); otherwise a
    delete that has to wait (finalizers) is stamped now."""

    def ttl_seconds(self) -> int | None:
        """Seconds an object of this kind lives after each write, or None: until deleted."""
        return None

    def admit_create(self, obj: Message) -> None:
        """Admission on create, after defaults and before validation (Pods get default tolerations)."""

    def claims(self, obj: Message) -> list[str]:
        """Unique resources the object holds in etcd (created and released with it)."""
        return []

    async def create(self, ctx: StoreContext, obj: Message, unchanged: Sequence[tuple[str, int]]) -> Message:
        """Store a new object (Services allocate first)."""
        return await ctx.store.create(self.info, obj, ttl=self.ttl_seconds(), unchanged=unchanged)

    def check_delete(self, name: str) -> None:
        """Refuse the deletion of objects that must stay (``ApiError``)."""

    async def delete_grace(self, ctx: StoreContext, obj: Message, grace: int) -> int:
        """The grace period after the kind's own checks (a namespace that still holds objects waits)."""
        return grace

    def removable(self, obj: Message) -> bool:
        """Whether an object being deleted whose finalizers are all gone may be removed now."""
        return True

    def default(self, obj: Message) -> None:
        """Fill in defaults (on create and update, before validation)."""
        apply_defaults(obj)

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


class PodStrategy(Strategy):
    """Pods: spec mostly immutable, nodeName set once, graceful delete."""

    graceful = True

    def admit_create(self, obj: Message) -> None:
        add_default_tolerations(
            obj,  # type: ignore[arg-type]
            not_ready_seconds=self.options.not_ready_toleration_seconds,
            unreachable_seconds=self.options.unreachable_toleration_seconds,
        )

    def removable(self, obj: Message) -> bool:
        return meta(obj).deletion_grace_period_seconds == 0  # the agent confirmed the processes stopped

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


class ReplicaSetStrategy(Strategy):
    """ReplicaSets: replicas default 1; the selector is immutable."""

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        if new.spec.selector != old.spec.selector:  # type: ignore[attr-defined]
            errs.add("spec.selector", "field is immutable")


class DeploymentStrategy(ReplicaSetStrategy):
    """Deployments: Kubernetes' rolling-update defaults."""


class DaemonSetStrategy(ReplicaSetStrategy):
    """DaemonSets: RollingUpdate with maxUnavailable 1 by default."""


class JobStrategy(Strategy):
    """Jobs: parallelism/completions/backoffLimit defaults, generated selector, immutable template."""

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        n: batch_pb2.Job = new  # type: ignore[assignment]
        o: batch_pb2.Job = old  # type: ignore[assignment]
        if n.spec.selector != o.spec.selector:
            errs.add("spec.selector", "field is immutable")
        if n.spec.template != o.spec.template:
            errs.add("spec.template", "field is immutable")
        if n.spec.completions != o.spec.completions:
            errs.add("spec.completions", "field is immutable")
        if n.spec.completion_mode != o.spec.completion_mode:
            errs.add("spec.completionMode", "field is immutable")


# ------------------------------------------------------------- other kinds


class ServiceStrategy(Strategy):
    """Services: ClusterIP type, TCP, targetPort = port by default; clusterIP immutable; a cluster IP and node
    ports allocated on create and held as etcd claims."""

    def claims(self, obj: Message) -> list[str]:
        return claims_of(obj)  # type: ignore[arg-type]

    async def create(self, ctx: StoreContext, obj: Message, unchanged: Sequence[tuple[str, int]]) -> Message:
        ips: set[str] = set()
        ports: set[str] = set()
        for svc in ctx.cached("Service"):
            ips.add(svc.spec.cluster_ip)  # type: ignore[attr-defined]
            ports.update(str(p.node_port) for p in svc.spec.ports if p.node_port)  # type: ignore[attr-defined]
        return await ctx.allocator.create(obj, ips, ports, unchanged=unchanged)  # type: ignore[arg-type]

    def prepare_for_update(self, new: Message, old: Message) -> None:
        super().prepare_for_update(new, old)
        n: core_pb2.Service = new  # type: ignore[assignment]
        o: core_pb2.Service = old  # type: ignore[assignment]
        # An update that leaves out what was allocated keeps it (as Kubernetes does for clusterIP).
        if not n.spec.cluster_ip:
            n.spec.cluster_ip = o.spec.cluster_ip
            del n.spec.cluster_ips[:]
            n.spec.cluster_ips.extend(o.spec.cluster_ips)
        if n.spec.type == o.spec.type:
            allocated = {(p.port, p.protocol): p.node_port for p in o.spec.ports}
            for p in n.spec.ports:
                if not p.node_port:
                    p.node_port = allocated.get((p.port, p.protocol), 0)

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        n: core_pb2.Service = new  # type: ignore[assignment]
        o: core_pb2.Service = old  # type: ignore[assignment]
        if o.spec.cluster_ip and n.spec.cluster_ip != o.spec.cluster_ip:
            errs.add("spec.clusterIP", f"field is immutable (is {o.spec.cluster_ip!r})")
        # Node ports are claimed when the Service is created; changing them needs a new Service.
        if sorted(p.node_port for p in n.spec.ports) != sorted(p.node_port for p in o.spec.ports) or (
            n.spec.type != o.spec.type and "NodePort" in (n.spec.type, o.spec.type)
        ):
            errs.add(
                "spec.ports",
                "node ports and a change to or from type NodePort need a new Service (delete it and create it again)",
            )


class ConfigDataStrategy(Strategy):
    """ConfigMaps and Secrets: ``immutable: true`` freezes the data."""

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


class BindingStrategy(Strategy):
    """RoleBindings and ClusterRoleBindings: the role a binding grants never changes (Kubernetes' rule; make a
    new binding instead), so a grant cannot silently widen."""

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        if new.role_ref != old.role_ref:  # type: ignore[attr-defined]
            errs.add("roleRef", "field is immutable: delete the binding and create a new one")


class StatefulSetStrategy(ReplicaSetStrategy):
    """StatefulSets: selector immutable (as every workload), and so are what identifies their pods and claims:
    the service name, the claim templates and the pod management policy (Kubernetes' rule)."""

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        super().validate_update(errs, new, old)
        n: apps_pb2.StatefulSet = new  # type: ignore[assignment]
        o: apps_pb2.StatefulSet = old  # type: ignore[assignment]
        for field, camel in (
            ("service_name", "serviceName"),
            ("volume_claim_templates", "volumeClaimTemplates"),
            ("pod_management_policy", "podManagementPolicy"),
        ):
            if getattr(n.spec, field) != getattr(o.spec, field):
                errs.add(f"spec.{camel}", "field is immutable")


class RevisionStrategy(Strategy):
    """ControllerRevisions: the template a revision holds never changes."""

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        if new.data != old.data:  # type: ignore[attr-defined]
            errs.add("data", "field is immutable")


class ClaimStrategy(Strategy):
    """PersistentVolumeClaims: once bound to a volume, they stay bound to it."""

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        n: core_pb2.PersistentVolumeClaim = new  # type: ignore[assignment]
        o: core_pb2.PersistentVolumeClaim = old  # type: ignore[assignment]
        if o.spec.volume_name and n.spec.volume_name != o.spec.volume_name:
            errs.add("spec.volumeName", "field is immutable once bound")
        if n.spec.access_modes != o.spec.access_modes or n.spec.storage_class_name != o.spec.storage_class_name:
            errs.add("spec", "accessModes and storageClassName are immutable")
        if n.spec.resources != o.spec.resources:
            errs.add("spec.resources", "field is immutable (volumes are not resized)")


class VolumeStrategy(Strategy):
    """PersistentVolumes: where the data is (path, node) never changes."""

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        n: core_pb2.PersistentVolume = new  # type: ignore[assignment]
        o: core_pb2.PersistentVolume = old  # type: ignore[assignment]
        if n.spec.local != o.spec.local or n.spec.node_affinity != o.spec.node_affinity:
            errs.add("spec", "local and nodeAffinity are immutable")


class PriorityClassStrategy(Strategy):
    """PriorityClasses: the value never changes (pods already carry it), and at most one is the global
    default (checked against the cache: a hint, as Kubernetes' own admission is)."""

    def validate_update(self, errs: Errors, new: Message, old: Message) -> None:
        if new.value != old.value:  # type: ignore[attr-defined]
            errs.add("value", "field is immutable")

    async def create(self, ctx: StoreContext, obj: Message, unchanged: Sequence[tuple[str, int]]) -> Message:
        if obj.global_default:  # type: ignore[attr-defined]
            others = [c for c in ctx.cached("PriorityClass") if c.global_default]  # type: ignore[attr-defined]
            if others:
                raise InvalidError(
                    f'PriorityClass "{meta(obj).name}": globalDefault: PriorityClass "{meta(others[0]).name}" is '
                    "already the global default",
                    field="globalDefault",
                )
        return await super().create(ctx, obj, unchanged)


class NodeStrategy(Strategy):
    """Nodes: the agent registers its Node with status included (as kubelets do)."""

    keep_status_on_create = True


class NamespaceStrategy(Strategy):
    """Namespaces: phase Active on create; the system ones are never deleted; one that etcd (not a cache, which
    may lag a create) still holds objects in turns Terminating, for the namespace controller to empty, instead
    of being removed."""

    def prepare_for_create(self, obj: Message) -> None:
        super().prepare_for_create(obj)
        obj.status.phase = "Active"  # type: ignore[attr-defined]

    def check_delete(self, name: str) -> None:
        if name in PROTECTED_NAMESPACES:
            raise ForbiddenError(f'namespace "{name}" is protected and may not be deleted')

    async def delete_grace(self, ctx: StoreContext, obj: Message, grace: int) -> int:
        counts = await ctx.store.count_in_namespace(kinds.KINDS, meta(obj).name)
        if not any(counts.values()):
            return grace
        obj.status.phase = "Terminating"  # type: ignore[attr-defined]
        return 1  # until the namespace controller has emptied it


class EventStrategy(Strategy):
    """Events expire ``--event-ttl`` after their last write, as in Kubernetes: an etcd lease deletes them, so
    no controller has to and a busy cluster's history stays bounded."""

    def ttl_seconds(self) -> int | None:
        return self.options.event_ttl_seconds or None


_STRATEGIES: dict[str, type[Strategy]] = {
    "Event": EventStrategy,
    "Pod": PodStrategy,
    "ReplicaSet": ReplicaSetStrategy,
    "Deployment": DeploymentStrategy,
    "DaemonSet": DaemonSetStrategy,
    "Job": JobStrategy,
    "Service": ServiceStrategy,
    "ConfigMap": ConfigDataStrategy,
    "Secret": ConfigDataStrategy,
    "Node": NodeStrategy,
    "PriorityClass": PriorityClassStrategy,
    "StatefulSet": StatefulSetStrategy,
    "ControllerRevision": RevisionStrategy,
    "PersistentVolumeClaim": ClaimStrategy,
    "PersistentVolume": VolumeStrategy,
    "Namespace": NamespaceStrategy,
    "RoleBinding": BindingStrategy,
    "ClusterRoleBinding": BindingStrategy,
}


def for_kind(info: kinds.KindInfo, options: StrategyOptions | None = None) -> Strategy:
    """The strategy of a kind."""
    return _STRATEGIES.get(info.kind, Strategy)(info, options)
