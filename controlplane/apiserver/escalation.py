"""RBAC's escalation prevention (Kubernetes' rule): nobody grants a permission they do not hold.

- Creating or updating a Role or ClusterRole needs every permission in it (in the Role's namespace, or
  cluster-wide for a ClusterRole) — or the ``escalate`` verb on roles/clusterroles.
- Creating or updating a RoleBinding or ClusterRoleBinding needs every permission of the role it refers to
  (in the binding's namespace, or cluster-wide) — or the ``bind`` verb on that role.

Without this, ``create rolebindings`` alone would let a namespace editor bind ``cluster-admin``. A ``*`` in a
rule is a permission of its own: only a rule with ``*`` covers it. ``system:masters`` holds everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from google.protobuf.message import Message

from controlplane.api.errors import ForbiddenError
from controlplane.api.objects import describe, meta
from controlplane.api.pb import rbac_pb2
from controlplane.apiserver.authn import UserInfo
from controlplane.apiserver.authz import Attributes, AuthorizerChain
from controlplane.apiserver.guard import current_user

RBAC_GROUP = "rbac.authorization.k8s.io"
Rules = Callable[[rbac_pb2.RoleRef, str], Iterable[rbac_pb2.PolicyRule]]


def permissions(rules: Iterable[rbac_pb2.PolicyRule], user: UserInfo, namespace: str) -> Iterator[Attributes]:
    """Every (verb, group, resource, name) a set of rules grants, as requests to authorize."""
    for rule in rules:
        for verb in rule.verbs:
            for group in rule.api_groups:
                for resource in rule.resources:
                    plural, _, sub = resource.partition("/")
                    for name in list(rule.resource_names) or [""]:
                        yield Attributes(user, verb, plural, sub, namespace, name, group)


class EscalationCheck:
    """Refuses RBAC objects that would grant their author more than it holds."""

    def __init__(self, authorizer: AuthorizerChain, rules_of: Rules) -> None:
        self.authorizer = authorizer
        self.rules_of = rules_of

    async def _may(self, user: UserInfo, verb: str, resource: str, namespace: str, name: str) -> bool:
        allowed, _ = await self.authorizer.decide(Attributes(user, verb, resource, "", namespace, name, RBAC_GROUP))
        return allowed

    async def _require(self, obj: Message, rules: Iterable[rbac_pb2.PolicyRule], user: UserInfo, ns: str) -> None:
        for attrs in permissions(rules, user, ns):
            allowed, _ = await self.authorizer.decide(attrs)
            if not allowed:
                where = f'in namespace "{ns}"' if ns else "cluster-wide"
                what = f'{attrs.verb} "{attrs.full_resource}"'
                if attrs.api_group:
                    what += f' in API group "{attrs.api_group}"'
                if attrs.name:
                    what += f' named "{attrs.name}"'
                raise ForbiddenError(
                    f'{describe(obj)}: user "{user.name}" may not grant {what} {where}: it does not hold that '
                    "permission itself (RBAC's escalation rule; the bind or escalate verb lifts it)"
                )

    async def __call__(self, obj: Message, old: Message | None = None) -> None:
        """Raise PERMISSION_DENIED if the caller may not write ``obj`` for what it grants."""
        user = current_user.get(None)
        if user is None:
            return  # not a client request (the server itself)
        m = meta(obj)
        if isinstance(obj, rbac_pb2.Role | rbac_pb2.ClusterRole):
            resource = "roles" if isinstance(obj, rbac_pb2.Role) else "clusterroles"
            if not await self._may(user, "escalate", resource, m.namespace, m.name):
                await self._require(obj, obj.rules, user, m.namespace)
        elif isinstance(obj, rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding):
            ref = obj.role_ref
            resource = "roles" if ref.kind == "Role" else "clusterroles"
            namespace = m.namespace if isinstance(obj, rbac_pb2.RoleBinding) else ""
            # The bind verb counts where the binding is (a Role in the namespace may grant it for a ClusterRole).
            if not await self._may(user, "bind", resource, namespace, ref.name):
                await self._require(obj, self.rules_of(ref, namespace), user, namespace)
