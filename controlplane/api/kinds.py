"""The registry of kinds: apiVersion, plural, scope and message class of each.

Everything that must treat kinds generically (storage keys, the API service,
manifests, the CLI) looks kinds up here, so adding a kind is one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from controlplane.api.errors import InvalidError, NotFoundError
from controlplane.api.pb import (
    api_pb2,
    apps_pb2,
    autoscaling_pb2,
    batch_pb2,
    coordination_pb2,
    core_pb2,
    policy_pb2,
    rbac_pb2,
    scheduling_pb2,
)


@dataclass(frozen=True)
class KindInfo:
    """Static facts about one kind."""

    kind: str
    """The kind's name as written in manifests, e.g. ``Deployment``."""
    api_version: str
    """Kubernetes' apiVersion for the kind, e.g. ``apps/v1``."""
    plural: str
    """Lower-case plural used in storage keys and the CLI, e.g. ``deployments``."""
    namespaced: bool
    """Whether objects live in a namespace."""
    message: type[Message]
    """The generated protobuf class."""
    envelope_field: str
    """The field of the ``Object`` envelope's ``kind`` oneof that carries it."""
    short_names: tuple[str, ...] = ()
    """Abbreviations accepted by the CLI and the API (``po``, ``deploy``)."""
    has_status: bool = True
    """Whether the kind has a ``status`` that only UpdateStatus may write."""
    categories: tuple[str, ...] = ()
    """Groups the CLI can ask for at once: ``all`` (``navarch get all``), as Kubernetes' categories."""

    @property
    def group(self) -> str:
        """The API group ("" for core kinds)."""
        return self.api_version.rpartition("/")[0]


_RBAC = "rbac.authorization.k8s.io/v1"

KINDS: tuple[KindInfo, ...] = (
    KindInfo("Namespace", "v1", "namespaces", False, core_pb2.Namespace, "namespace", ("ns",)),
    KindInfo("Node", "v1", "nodes", False, core_pb2.Node, "node", ("no",)),
    KindInfo("Pod", "v1", "pods", True, core_pb2.Pod, "pod", ("po",), categories=("all",)),
    KindInfo(
        "ReplicaSet", "apps/v1", "replicasets", True, apps_pb2.ReplicaSet, "replica_set", ("rs",), categories=("all",)
    ),
    KindInfo(
        "Deployment",
        "apps/v1",
        "deployments",
        True,
        apps_pb2.Deployment,
        "deployment",
        ("deploy",),
        categories=("all",),
    ),
    KindInfo(
        "DaemonSet", "apps/v1", "daemonsets", True, apps_pb2.DaemonSet, "daemon_set", ("ds",), categories=("all",)
    ),
    KindInfo(
        "StatefulSet",
        "apps/v1",
        "statefulsets",
        True,
        apps_pb2.StatefulSet,
        "stateful_set",
        ("sts",),
        categories=("all",),
    ),
    KindInfo(
        "ControllerRevision",
        "apps/v1",
        "controllerrevisions",
        True,
        apps_pb2.ControllerRevision,
        "controller_revision",
        (),
        has_status=False,
    ),
    KindInfo("Job", "batch/v1", "jobs", True, batch_pb2.Job, "job", categories=("all",)),
    KindInfo("CronJob", "batch/v1", "cronjobs", True, batch_pb2.CronJob, "cron_job", ("cj",), categories=("all",)),
    KindInfo(
        "HorizontalPodAutoscaler",
        "autoscaling/v2",
        "horizontalpodautoscalers",
        True,
        autoscaling_pb2.HorizontalPodAutoscaler,
        "horizontal_pod_autoscaler",
        ("hpa",),
        categories=("all",),
    ),
    KindInfo(
        "PodDisruptionBudget",
        "policy/v1",
        "poddisruptionbudgets",
        True,
        policy_pb2.PodDisruptionBudget,
        "pod_disruption_budget",
        ("pdb",),
    ),
    KindInfo(
        "PriorityClass",
        "scheduling.k8s.io/v1",
        "priorityclasses",
        False,
        scheduling_pb2.PriorityClass,
        "priority_class",
        ("pc",),
        has_status=False,
    ),
    KindInfo("Service", "v1", "services", True, core_pb2.Service, "service", ("svc",), categories=("all",)),
    KindInfo("Endpoints", "v1", "endpoints", True, core_pb2.Endpoints, "endpoints", ("ep",), has_status=False),
    KindInfo(
        "PersistentVolumeClaim",
        "v1",
        "persistentvolumeclaims",
        True,
        core_pb2.PersistentVolumeClaim,
        "persistent_volume_claim",
        ("pvc",),
    ),
    KindInfo(
        "PersistentVolume", "v1", "persistentvolumes", False, core_pb2.PersistentVolume, "persistent_volume", ("pv",)
    ),
    KindInfo("ConfigMap", "v1", "configmaps", True, core_pb2.ConfigMap, "config_map", ("cm",), has_status=False),
    KindInfo("Secret", "v1", "secrets", True, core_pb2.Secret, "secret", (), has_status=False),
    KindInfo("Event", "v1", "events", True, core_pb2.Event, "event", ("ev",), has_status=False),
    KindInfo("Lease", "coordination/v1", "leases", True, coordination_pb2.Lease, "lease", (), has_status=False),
    KindInfo("Role", _RBAC, "roles", True, rbac_pb2.Role, "role", (), has_status=False),
    KindInfo("ClusterRole", _RBAC, "clusterroles", False, rbac_pb2.ClusterRole, "cluster_role", (), has_status=False),
    KindInfo("RoleBinding", _RBAC, "rolebindings", True, rbac_pb2.RoleBinding, "role_binding", (), has_status=False),
    KindInfo(
        "ClusterRoleBinding",
        _RBAC,
        "clusterrolebindings",
        False,
        rbac_pb2.ClusterRoleBinding,
        "cluster_role_binding",
        (),
        has_status=False,
    ),
)

_BY_KIND = {k.kind: k for k in KINDS}
_BY_FIELD = {k.envelope_field: k for k in KINDS}
_BY_NAME: dict[str, KindInfo] = {}
for _k in KINDS:
    for _alias in (_k.kind.lower(), _k.plural, *_k.short_names):
        _BY_NAME[_alias] = _k
    if _k.group:
        _BY_NAME[f"{_k.plural}.{_k.group.split('/')[0]}"] = _k


# kubectl's order for `get all`: pods, services, daemonsets, deployments, replicasets, (statefulsets,) jobs.
_CATEGORY_ORDER = ("Pod", "Service", "DaemonSet", "Deployment", "ReplicaSet", "StatefulSet", "Job", "CronJob")


def category(name: str) -> list[KindInfo]:
    """The kinds of a category (``all``), in kubectl's order; empty for a name that is no category."""
    members = [k for k in KINDS if name.lower() in k.categories]
    return sorted(members, key=lambda k: _CATEGORY_ORDER.index(k.kind) if k.kind in _CATEGORY_ORDER else 99)


def known_pairs() -> str:
    """All apiVersion/kind pairs, for error messages."""
    return ", ".join(f"{k.api_version}/{k.kind}" for k in KINDS)


def lookup(name: str) -> KindInfo:
    """Find a kind by name, plural or short name (case-insensitive), e.g. ``deploy``."""
    found = _BY_NAME.get(name.strip().lower())
    if found is None:
        raise NotFoundError(f"the server does not have a kind named {name!r}; known kinds: {known_pairs()}")
    return found


def for_kind(api_version: str, kind: str) -> KindInfo:
    """Find a kind by its exact apiVersion and kind, as written in a manifest."""
    info = _BY_KIND.get(kind)
    if info is None or info.api_version != api_version:
        raise InvalidError(
            f"no kind {kind!r} in apiVersion {api_version!r}; known apiVersion/kind pairs: {known_pairs()}",
            field="apiVersion/kind",
        )
    return info


def of_envelope(obj: api_pb2.Object) -> KindInfo:
    """The kind carried by an envelope; an empty envelope is invalid input."""
    field = obj.WhichOneof("kind")
    if field is None:
        raise InvalidError("the object envelope is empty: set exactly one kind", field="object")
    return _BY_FIELD[field]


def of_message(msg: Message) -> KindInfo:
    """The kind of a bare object message."""
    for info in KINDS:
        if isinstance(msg, info.message):
            return info
    raise TypeError(f"{type(msg).__name__} is not an API kind")
