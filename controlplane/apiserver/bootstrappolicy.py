"""The roles every cluster starts with (Kubernetes' bootstrap policy, for Navarch's kinds).

ClusterRoles ``admin``, ``edit``, ``view`` (bind them with a RoleBinding for one namespace, or a
ClusterRoleBinding for all), ``cluster-admin``, one per control-plane component, and the node bootstrap
roles. Created at API server start when missing; a role annotated ``rbac.authorization.kubernetes.io/
autoupdate: "false"`` is left as the operator edited it, any other is reset to these rules.
"""

from __future__ import annotations

from google.protobuf.message import Message

from controlplane import pki
from controlplane.api.pb import rbac_pb2, scheduling_pb2
from controlplane.api.validation import SYSTEM_PRIORITY_CLASSES
from controlplane.apiserver.authn import BOOTSTRAPPERS_GROUP

AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete"]
ALL = ["*"]

WORKLOADS = [
    ("", ["pods", "pods/log", "pods/status", "services", "endpoints", "configmaps", "events"]),
    (
        "apps",
        [
            "deployments",
            "deployments/status",
            "replicasets",
            "replicasets/status",
            "daemonsets",
            "daemonsets/status",
            "statefulsets",
            "statefulsets/status",
            "controllerrevisions",
        ],
    ),
    ("batch", ["jobs", "jobs/status", "cronjobs", "cronjobs/status"]),
    ("policy", ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    ("", ["persistentvolumeclaims"]),
    ("autoscaling", ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
    # Read-only in fact (the metrics API serves no writes): what `navarch top pods` needs.
    ("metrics.k8s.io", ["pods"]),
]
MONITORING_URLS = ["/metrics", "/metrics/*", "/healthz", "/livez", "/readyz"]
"""What a scraper may GET on every component (Kubernetes' system:monitoring)."""


def _rule(verbs: list[str], group: str, resources: list[str], names: list[str] | None = None) -> rbac_pb2.PolicyRule:
    return rbac_pb2.PolicyRule(verbs=verbs, api_groups=[group], resources=resources, resource_names=names or [])


def _urls(verbs: list[str], urls: list[str]) -> rbac_pb2.PolicyRule:
    return rbac_pb2.PolicyRule(verbs=verbs, non_resource_urls=urls)


def _cluster_role(name: str, rules: list[rbac_pb2.PolicyRule]) -> rbac_pb2.ClusterRole:
    role = rbac_pb2.ClusterRole(rules=rules)
    role.metadata.name = name
    role.metadata.labels["navarch.io/bootstrapping"] = "rbac-defaults"
    role.metadata.annotations[AUTOUPDATE] = "true"
    return role


def _binding(name: str, role: str, kind: str, subject: str) -> rbac_pb2.ClusterRoleBinding:
    binding = rbac_pb2.ClusterRoleBinding(
        role_ref=rbac_pb2.RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
        subjects=[rbac_pb2.Subject(kind=kind, api_group="rbac.authorization.k8s.io", name=subject)],
    )
    binding.metadata.name = name
    binding.metadata.labels["navarch.io/bootstrapping"] = "rbac-defaults"
    binding.metadata.annotations[AUTOUPDATE] = "true"
    return binding


def _view() -> list[rbac_pb2.PolicyRule]:
    rules = [_rule(READ, group, resources) for group, resources in WORKLOADS]
    rules.append(_rule(READ, "", ["namespaces"]))
    return rules


def _edit() -> list[rbac_pb2.PolicyRule]:
    rules = [_rule([*READ, *WRITE], group, resources) for group, resources in WORKLOADS]
    rules += [
        _rule(["create"], "", ["pods/exec", "pods/portforward", "pods/eviction"]),
        _rule([*READ, *WRITE], "", ["secrets"]),
        _rule(READ, "", ["namespaces"]),
    ]
    return rules


def default_priority_classes() -> list[scheduling_pb2.PriorityClass]:
    """The built-in PriorityClasses (Kubernetes' names and values), for the cluster's own critical pods."""
    out = []
    for name, value in SYSTEM_PRIORITY_CLASSES.items():
        pc = scheduling_pb2.PriorityClass(api_version="scheduling.k8s.io/v1", kind="PriorityClass", value=value)
        pc.metadata.name = name
        pc.description = "Used for system critical pods that must run in the cluster."
        pc.preemption_policy = "PreemptLowerPriority"
        out.append(pc)
    return out


def default_cluster_roles() -> list[rbac_pb2.ClusterRole]:
    """Every bootstrap ClusterRole."""
    return [
        _cluster_role("cluster-admin", [_rule(ALL, "*", ["*"]), _urls(ALL, ["*"])]),
        _cluster_role(pki.MONITORING_GROUP, [_urls(["get"], MONITORING_URLS)]),
        _cluster_role(
            "admin", [*_edit(), _rule([*READ, *WRITE], "rbac.authorization.k8s.io", ["roles", "rolebindings"])]
        ),
        _cluster_role("edit", _edit()),
        _cluster_role("view", _view()),
        _cluster_role(
            pki.SCHEDULER_USER,
            [
                _rule(READ, "", ["pods", "nodes", "namespaces", "services"]),
                _rule(["update", "patch"], "", ["pods", "pods/status"]),
                # Preemption: victims are deleted, and disruption budgets weigh which.
                _rule(["delete"], "", ["pods"]),
                _rule(READ, "policy", ["poddisruptionbudgets"]),
                _rule(READ, "scheduling.k8s.io", ["priorityclasses"]),
                # Delayed volume binding: the chosen node is written into the pod's new claims.
                _rule([*READ, "update", "patch"], "", ["persistentvolumeclaims"]),
                _rule(READ, "", ["persistentvolumes"]),
                _rule(["create"], "", ["pods/binding"]),
                _rule(["create", "update", "patch"], "", ["events"]),
                _rule(["get", "create", "update"], "coordination", ["leases"]),
                _rule(READ, "apps", ["replicasets", "daemonsets"]),
                # Its metrics endpoint asks the API server who may scrape it.
                _rule(["create"], "authorization.k8s.io", ["subjectaccessreviews"]),
            ],
        ),
        # Controllers create, update and delete every kind (the namespace and garbage collectors included),
        # and the autoscaler reads the metrics API.
        _cluster_role(pki.CONTROLLER_MANAGER_USER, [_rule(ALL, "*", ["*"])]),
        _cluster_role(
            "system:node-bootstrapper",
            [_rule(["create"], "certificates.k8s.io", ["certificatesigningrequests/nodeclient"])],
        ),
        _cluster_role(
            "system:certificates:selfnodeclient",
            [_rule(["create"], "certificates.k8s.io", ["certificatesigningrequests/selfnodeclient"])],
        ),
    ]


def default_cluster_role_bindings() -> list[rbac_pb2.ClusterRoleBinding]:
    """Every bootstrap ClusterRoleBinding."""
    return [
        _binding("cluster-admin", "cluster-admin", "Group", pki.MASTERS_GROUP),
        _binding(pki.MONITORING_GROUP, pki.MONITORING_GROUP, "Group", pki.MONITORING_GROUP),
        _binding(pki.SCHEDULER_USER, pki.SCHEDULER_USER, "User", pki.SCHEDULER_USER),
        _binding(pki.CONTROLLER_MANAGER_USER, pki.CONTROLLER_MANAGER_USER, "User", pki.CONTROLLER_MANAGER_USER),
        _binding("system:node-bootstrapper", "system:node-bootstrapper", "Group", BOOTSTRAPPERS_GROUP),
        _binding("system:certificates:selfnodeclient", "system:certificates:selfnodeclient", "Group", pki.NODES_GROUP),
    ]


def needs_reset(stored: Message, default: Message) -> bool:
    """Whether a stored bootstrap object should be put back to its default."""
    if stored.metadata.annotations.get(AUTOUPDATE) == "false":  # type: ignore[attr-defined]
        return False
    field = "rules" if isinstance(default, rbac_pb2.ClusterRole) else "subjects"
    return list(getattr(stored, field)) != list(getattr(default, field))
