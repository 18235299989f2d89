"""RBAC and the node authorizer, table-driven, with real calls on the secure cluster (each user has its own
client certificate; writes are server-side dry runs, so authorization runs exactly as for a real write and
nothing is stored). Each row is allow or deny; a denial must be PERMISSION_DENIED, an allowed call anything
else (NOT_FOUND for an object that does not exist is fine: it got past authorization).

Plausible bugs each block catches: a Role in one namespace granting in another; a RoleBinding to a ClusterRole
granting cluster-wide; ``resourceNames`` leaking to list/create or to other names; ``*`` verbs not matching,
or matching other resources; ``edit`` reaching RBAC objects or ``view`` reaching Secrets; a ClusterRoleBinding
not reaching every namespace; a node reading a ConfigMap (or Secret) no pod of its own references, using
another node's Lease, or listing pods without its field selector.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from google.protobuf.message import Message

from controlplane import pki
from controlplane.api.errors import ApiError, ForbiddenError, InvalidError
from controlplane.api.pb import api_pb2, apps_pb2, coordination_pb2, core_pb2, rbac_pb2
from controlplane.client.client import ApiClient
from tests.e2e.conftest import eventually_async
from tests.security.conftest import SecureCluster

A, B = "rbac-a", "rbac-b"
GROUP = "rbac.authorization.k8s.io"


def _meta(obj: Message, name: str, namespace: str = "") -> Message:
    obj.metadata.name = name
    if namespace:
        obj.metadata.namespace = namespace
    return obj


def _rule(verbs: list[str], group: str, resources: list[str], names: list[str] | None = None) -> rbac_pb2.PolicyRule:
    return rbac_pb2.PolicyRule(verbs=verbs, api_groups=[group], resources=resources, resource_names=names or [])


def _pods_reader() -> rbac_pb2.Role:
    return rbac_pb2.Role(rules=[_rule(["get", "list"], "", ["pods"])])


def _everything() -> rbac_pb2.Role:
    return rbac_pb2.Role(rules=[_rule(["*"], "*", ["*"])])


def _nodes_reader() -> rbac_pb2.Role:
    return rbac_pb2.Role(rules=[_rule(["get"], "", ["nodes"])])


def _subject(who: str) -> rbac_pb2.Subject:
    kind, _, name = who.partition(":")
    return rbac_pb2.Subject(kind=kind, name=name, api_group=GROUP)


def _role_binding(name: str, namespace: str, role_kind: str, role: str, who: str) -> rbac_pb2.RoleBinding:
    binding = rbac_pb2.RoleBinding(role_ref=rbac_pb2.RoleRef(api_group=GROUP, kind=role_kind, name=role))
    binding.subjects.append(_subject(who))
    return _meta(binding, name, namespace)  # type: ignore[return-value]


def _pod(name: str, namespace: str, node: str = "", **refs: str) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    c = pod.spec.containers.add(name="main", command=["true"])
    if "config_map_env" in refs:
        ref = c.env.add(name="X").value_from.config_map_key_ref
        ref.name, ref.key = refs["config_map_env"], "k"
    if "config_map_volume" in refs:
        pod.spec.volumes.add(name="v").config_map.name = refs["config_map_volume"]
    if node:
        pod.spec.node_name = node
    return _meta(pod, name, namespace)  # type: ignore[return-value]


def _configmap(name: str, namespace: str) -> core_pb2.ConfigMap:
    return _meta(core_pb2.ConfigMap(data={"k": "v"}), name, namespace)  # type: ignore[return-value]


def _deployment(name: str, namespace: str) -> apps_pb2.Deployment:
    d = apps_pb2.Deployment()
    d.spec.selector.match_labels["a"] = "b"
    d.spec.template.metadata.labels["a"] = "b"
    d.spec.template.spec.containers.add(name="m", command=["true"])
    return _meta(d, name, namespace)  # type: ignore[return-value]


def _lease(name: str, namespace: str) -> coordination_pb2.Lease:
    lease = coordination_pb2.Lease()
    lease.spec.holder_identity = name
    return _meta(lease, name, namespace)  # type: ignore[return-value]


def _event(namespace: str) -> core_pb2.Event:
    e = core_pb2.Event(reason="Tested", message="hi", type="Normal")
    e.involved_object.kind, e.involved_object.name, e.involved_object.namespace = "Pod", "x", namespace
    return _meta(e, "ev-rbac", namespace)  # type: ignore[return-value]


Call = Callable[[ApiClient], Awaitable[object]]


@dataclass(frozen=True)
class Row:
    who: str
    """A key of USERS."""
    what: str
    call: Call
    allowed: bool


def get(kind: str, name: str, namespace: str) -> Call:
    return lambda c: c.get_by_name(kind, name, namespace)


def lst(kind: str, namespace: str, field_selector: str = "") -> Call:
    return lambda c: c.list(kind, namespace, field_selector=field_selector)


def create(obj: Message) -> Call:
    return lambda c: c.create(obj, dry_run=True)


def delete(kind: str, name: str, namespace: str) -> Call:
    return lambda c: c.delete(kind, name, namespace, dry_run=True)


def evict(name: str, namespace: str) -> Call:
    return lambda c: c.evict(name, namespace, dry_run=True)


def patch(kind: str, name: str, namespace: str) -> Call:
    return lambda c: c.patch(kind, name, {"metadata": {"labels": {"touched": "yes"}}}, namespace, dry_run=True)


def bind(*where: tuple[str, str]) -> Call:
    """BindPods of pods (namespace, name) that do not exist: authorized or not, nothing is written."""
    bindings = [api_pb2.PodBinding(namespace=ns, name=name, node_name="rbac-n1") for ns, name in where]
    return lambda c: c.bind_pods(bindings)


def forward(name: str, namespace: str) -> Call:
    """A port-forward to a pod that does not exist: past authorization it is NOT_FOUND."""

    async def call(c: ApiClient) -> None:
        async def nothing() -> AsyncIterator[bytes]:
            return
            yield b""

        async for _ in c.port_forward(name, 80, nothing(), namespace):
            pass

    return call


def patch_status(kind: str, name: str, namespace: str) -> Call:
    return lambda c: c.patch(kind, name, {"status": {"message": "seen"}}, namespace, status=True, dry_run=True)


# user -> (certificate name, groups)
USERS = {
    "viewer": ("vera", ("viewers",)),  # view in A through its group
    "editor": ("ed", ()),  # edit in A
    "admin": ("ada", ()),  # admin in A
    "named": ("nina", ()),  # a Role with resourceNames [allowed-cm] in A
    "star": ("stella", ()),  # a Role with verbs ["*"] on deployments in A
    "cluster": ("carl", ()),  # a ClusterRoleBinding to a ClusterRole reading configmaps
    "nobody": ("noel", ()),  # authenticated, no bindings
    "binder": ("bea", ()),  # may create rolebindings in A and has the bind verb on cluster-admin only
    "node": ("system:node:rbac-n1", (pki.NODES_GROUP,)),
    "scheduler": (pki.SCHEDULER_USER, ()),  # the bootstrap scheduler role, cluster-wide
    "podbinder": ("bo", ()),  # a Role in A granting create pods/binding
}

ROWS = [
    # view: reads workloads in A only, never Secrets, never writes
    Row("viewer", "list pods in A", lst("Pod", A), True),
    Row("viewer", "get a deployment in A", get("Deployment", "web", A), True),
    Row("viewer", "list pods in B", lst("Pod", B), False),
    Row("viewer", "get a secret in A", get("Secret", "s", A), False),
    Row("viewer", "create a configmap in A", create(_configmap("v", A)), False),
    Row("viewer", "list pods everywhere", lst("Pod", ""), False),
    # edit: writes workloads and secrets in A, not RBAC, not other namespaces
    Row("editor", "create a deployment in A", create(_deployment("e", A)), True),
    Row("editor", "delete a configmap in A", delete("ConfigMap", "allowed-cm", A), True),
    Row("editor", "get a secret in A", get("Secret", "s", A), True),
    Row(
        "editor", "create a role binding in A", create(_role_binding("x", A, "ClusterRole", "admin", "User:ed")), False
    ),
    Row("editor", "create a deployment in B", create(_deployment("e", B)), False),
    Row("editor", "list nodes", lst("Node", ""), False),
    # admin: edit plus RBAC in A
    Row("admin", "create a role binding in A", create(_role_binding("x", A, "ClusterRole", "view", "User:z")), True),
    Row("admin", "patch a deployment in A", patch("Deployment", "web", A), True),
    Row("admin", "create a role binding in B", create(_role_binding("x", B, "ClusterRole", "view", "User:z")), False),
    # RBAC's escalation rule: a binding or role may grant only what its author holds.
    Row(
        "admin",
        "bind cluster-admin in A (escalation)",
        create(_role_binding("x", A, "ClusterRole", "cluster-admin", "User:ada")),
        False,
    ),
    Row(
        "binder",
        "bind cluster-admin in A with the bind verb",
        create(_role_binding("x", A, "ClusterRole", "cluster-admin", "User:bea")),
        True,
    ),
    Row(
        "binder", "bind admin in A without it", create(_role_binding("x", A, "ClusterRole", "admin", "User:bea")), False
    ),
    Row("admin", "create a role in A with what it holds", create(_meta(_pods_reader(), "r", A)), True),
    Row("admin", "create a role in A granting everything", create(_meta(_everything(), "r", A)), False),
    Row("admin", "create a role in A granting nodes", create(_meta(_nodes_reader(), "r", A)), False),
    # resourceNames: only get/update/patch/delete of the named object
    Row("named", "get the named configmap", get("ConfigMap", "allowed-cm", A), True),
    Row("named", "patch the named configmap", patch("ConfigMap", "allowed-cm", A), True),
    Row("named", "get another configmap", get("ConfigMap", "other-cm", A), False),
    Row("named", "list configmaps", lst("ConfigMap", A), False),
    Row("named", "create a configmap of that name", create(_configmap("allowed-cm", A)), False),
    Row("named", "get the named configmap in B", get("ConfigMap", "allowed-cm", B), False),
    # "*" verbs: every verb on the resource, nothing else
    Row("star", "delete a deployment in A", delete("Deployment", "web", A), True),
    Row("star", "create a deployment in A", create(_deployment("s", A)), True),
    Row("star", "list deployments in A", lst("Deployment", A), True),
    Row("star", "list replicasets in A", lst("ReplicaSet", A), False),
    Row("star", "list pods in A", lst("Pod", A), False),
    # ClusterRoleBinding: every namespace, and cluster-wide lists
    Row("cluster", "list configmaps in A", lst("ConfigMap", A), True),
    Row("cluster", "list configmaps in B", lst("ConfigMap", B), True),
    Row("cluster", "list configmaps everywhere", lst("ConfigMap", ""), True),
    Row("cluster", "create a configmap in A", create(_configmap("c", A)), False),
    Row("nobody", "list pods in A", lst("Pod", A), False),
    Row("nobody", "list namespaces", lst("Namespace", ""), False),
    # the node authorizer: only what its own pods need
    Row("node", "get a configmap its pod's volume references", get("ConfigMap", "vol-cm", A), True),
    Row("node", "get a configmap its pod's env references", get("ConfigMap", "env-cm", A), True),
    Row("node", "get a configmap only another node's pod references", get("ConfigMap", "other-cm", A), False),
    Row("node", "list configmaps", lst("ConfigMap", A), False),
    Row("node", "create its own lease", create(_lease("rbac-n1", "navarch-node-lease")), True),
    Row("node", "create another node's lease", create(_lease("rbac-n2", "navarch-node-lease")), False),
    Row("node", "create its lease in another namespace", create(_lease("rbac-n1", A)), False),
    Row("node", "create an event", create(_event(A)), True),
    Row("node", "list its own pods", lst("Pod", "", "spec.nodeName=rbac-n1"), True),
    Row("node", "list another node's pods", lst("Pod", "", "spec.nodeName=rbac-n2"), False),
    Row("node", "list every pod", lst("Pod", ""), False),
    Row("node", "patch its own pod's status", patch_status("Pod", "on-n1", A), True),
    Row("node", "patch another node's pod's status", patch_status("Pod", "on-n2", A), False),
    Row("node", "delete its own pod", delete("Pod", "on-n1", A), True),
    Row("node", "delete another node's pod", delete("Pod", "on-n2", A), False),
    # NodeRestriction's rule: a node may not relabel its pods (into another Service) or rewrite owners.
    Row("node", "patch its own pod's labels", patch("Pod", "on-n1", A), False),
    Row("node", "list services", lst("Service", ""), True),
    Row("node", "create a deployment", create(_deployment("n", A)), False),
    Row("node", "list secrets", lst("Secret", A), False),
    Row("node", "bind a pod to itself", bind((A, "ghost")), False),
    # BindPods is create pods/binding in every namespace it names; several need a cluster-wide grant.
    Row("scheduler", "bind pods in A and B at once", bind((A, "ghost"), (B, "ghost")), True),
    Row("podbinder", "bind pods in A", bind((A, "ghost"), (A, "ghost2")), True),
    Row("podbinder", "bind a pod in B", bind((B, "ghost")), False),
    Row("podbinder", "bind pods in A and B at once", bind((A, "ghost"), (B, "ghost")), False),
    Row("editor", "bind a pod in A (edit does not grant pods/binding)", bind((A, "ghost")), False),
    Row("editor", "port-forward to a pod in A", forward("ghost", A), True),
    Row("viewer", "port-forward to a pod in A (view does not grant it)", forward("ghost", A), False),
    Row("editor", "port-forward to a pod in B", forward("ghost", B), False),
    # Evictions are create pods/eviction: edit grants it, view does not; the scheduler may read budgets.
    Row("editor", "evict a pod in A", evict("ghost", A), True),
    Row("viewer", "evict a pod in A (view does not grant it)", evict("ghost", A), False),
    Row("editor", "evict a pod in B", evict("ghost", B), False),
    Row("scheduler", "list disruption budgets everywhere", lst("PodDisruptionBudget", ""), True),
    Row("viewer", "list disruption budgets in A", lst("PodDisruptionBudget", A), True),
]


async def _setup(admin: ApiClient) -> None:
    for ns in (A, B):
        await admin.create(_meta(core_pb2.Namespace(), ns))
    cm_reader = rbac_pb2.Role(rules=[_rule(["get", "update", "patch", "delete"], "", ["configmaps"], ["allowed-cm"])])
    star = rbac_pb2.Role(rules=[_rule(["*"], "apps", ["deployments"])])
    await admin.create(_meta(cm_reader, "cm-reader", A))
    await admin.create(_meta(star, "star", A))
    binder = rbac_pb2.Role(
        rules=[
            _rule(["create"], GROUP, ["rolebindings"]),
            _rule(["bind"], GROUP, ["clusterroles"], ["cluster-admin"]),
        ]
    )
    await admin.create(_meta(binder, "binder", A))
    await admin.create(_meta(rbac_pb2.Role(rules=[_rule(["create"], "", ["pods/binding"])]), "pod-binder", A))
    reader = rbac_pb2.ClusterRole(rules=[_rule(["get", "list", "watch"], "", ["configmaps"])])
    await admin.create(_meta(reader, "rbac-cm-reader"))
    crb = rbac_pb2.ClusterRoleBinding(
        role_ref=rbac_pb2.RoleRef(api_group=GROUP, kind="ClusterRole", name="rbac-cm-reader")
    )
    crb.subjects.append(_subject("User:carl"))
    await admin.create(_meta(crb, "rbac-carl"))
    for binding in (
        _role_binding("viewers", A, "ClusterRole", "view", "Group:viewers"),
        _role_binding("editors", A, "ClusterRole", "edit", "User:ed"),
        _role_binding("admins", A, "ClusterRole", "admin", "User:ada"),
        _role_binding("named", A, "Role", "cm-reader", "User:nina"),
        _role_binding("star", A, "Role", "star", "User:stella"),
        _role_binding("binder", A, "Role", "binder", "User:bea"),
        _role_binding("pod-binder", A, "Role", "pod-binder", "User:bo"),
    ):
        await admin.create(binding)
    for ns in (A, B):
        await admin.create(_deployment("web", ns))
        await admin.create(_configmap("allowed-cm", ns))
    for name in ("other-cm", "vol-cm", "env-cm"):
        await admin.create(_configmap(name, A))
    await admin.create(_pod("on-n1", A, "rbac-n1", config_map_volume="vol-cm", config_map_env="env-cm"))
    await admin.create(_pod("on-n2", A, "rbac-n2", config_map_volume="other-cm"))


async def _outcome(client: ApiClient, call: Call) -> bool:
    try:
        await call(client)
    except ForbiddenError:
        return False
    except ApiError:
        return True  # past authorization (NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT ...)
    return True


@pytest.fixture(scope="module")
async def rbac_world(secure: SecureCluster) -> SecureCluster:
    async with secure.admin() as admin:
        await _setup(admin)
    return secure


async def test_every_row_of_the_rbac_and_node_table(rbac_world: SecureCluster) -> None:
    clients = {key: rbac_world.user(name, *groups) for key, (name, groups) in USERS.items()}
    try:
        # Bindings reach the authorizers through the watch caches: wait until the last one is effective.
        async def settled() -> bool:
            return await _outcome(clients["star"], lst("Deployment", A)) and await _outcome(
                clients["cluster"], lst("ConfigMap", B)
            )

        await eventually_async(settled, timeout=15)
        outcomes = await asyncio.gather(*(_outcome(clients[r.who], r.call) for r in ROWS))
        wrong = [
            f"{r.who}: {r.what}: expected {'allow' if r.allowed else 'deny'}"
            for r, o in zip(ROWS, outcomes, strict=True)
            if o != r.allowed
        ]
        assert not wrong, "\n".join(wrong)
        assert sum(r.allowed for r in ROWS) >= 15 and sum(not r.allowed for r in ROWS) >= 15
    finally:
        for c in clients.values():
            await c.close()


async def test_a_bindings_role_ref_is_immutable(rbac_world: SecureCluster) -> None:
    async with rbac_world.admin() as admin:
        binding = await admin.get(rbac_pb2.RoleBinding, "viewers", A)
        binding.role_ref.name = "admin"  # escalating a group by editing the binding in place
        with pytest.raises(InvalidError, match="roleRef: field is immutable"):
            await admin.update(binding)
        assert (await admin.get(rbac_pb2.RoleBinding, "viewers", A)).role_ref.name == "view"
