"""Role-based access control over the watch caches: Roles, ClusterRoles and their bindings.

A request is allowed when a ClusterRoleBinding grants the user (or one of its groups) a ClusterRole with a
matching rule, or a RoleBinding in the request's namespace grants a Role or ClusterRole with one. Rules only
ever add permissions; there are no deny rules.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import Message

from controlplane.api import kinds
from controlplane.api.pb import rbac_pb2
from controlplane.apiserver.authz import Attributes, Decision
from controlplane.apiserver.watchcache import Filter, WatchCache
from controlplane.storage.keys import object_key

_ROLE = kinds.lookup("Role")
_CLUSTER_ROLE = kinds.lookup("ClusterRole")


def rule_allows(rule: rbac_pb2.PolicyRule, attrs: Attributes) -> bool:
    """Whether one rule covers the request."""
    if "*" not in rule.verbs and attrs.verb not in rule.verbs:
        return False
    if attrs.path:
        return any(url_matches(u, attrs.path) for u in rule.non_resource_urls)
    if "*" not in rule.api_groups and attrs.api_group not in rule.api_groups:
        return False
    full = attrs.full_resource
    if not any(r == "*" or r == full or (attrs.subresource and r == f"*/{attrs.subresource}") for r in rule.resources):
        return False
    if rule.resource_names:
        # A name-restricted rule cannot cover create or collection verbs: the name is not known or not one.
        return bool(attrs.name) and attrs.verb not in ("create", "list", "watch") and attrs.name in rule.resource_names
    return True


def url_matches(pattern: str, path: str) -> bool:
    """Kubernetes' nonResourceURLs rule: the exact path, ``*``, or a prefix ending in ``*``."""
    if pattern == "*" or pattern == path:
        return True
    return pattern.endswith("*") and path.startswith(pattern[:-1])


def subject_matches(subject: rbac_pb2.Subject, attrs: Attributes, binding_namespace: str) -> bool:
    """Whether a binding's subject is the caller."""
    if subject.kind == "User":
        return subject.name == attrs.user.name
    if subject.kind == "Group":
        return attrs.user.in_group(subject.name)
    if subject.kind == "ServiceAccount":
        namespace = subject.namespace or binding_namespace
        return attrs.user.name == f"system:serviceaccount:{namespace}:{subject.name}"
    return False


class RBACAuthorizer:
    """Evaluates RBAC objects as the API server's caches hold them."""

    def __init__(self, caches: dict[str, WatchCache]) -> None:
        self.caches = caches

    def rules_of(self, ref: rbac_pb2.RoleRef, namespace: str) -> Iterable[rbac_pb2.PolicyRule]:
        """The rules a binding's roleRef grants in ``namespace`` ("" for a ClusterRoleBinding)."""
        if ref.kind == "ClusterRole":
            role: Message | None = self.caches["ClusterRole"].get(object_key(_CLUSTER_ROLE, "", ref.name))
        elif ref.kind == "Role" and namespace:
            role = self.caches["Role"].get(object_key(_ROLE, namespace, ref.name))
        else:
            role = None
        return list(role.rules) if role is not None else []  # type: ignore[attr-defined]

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        """ALLOW if a binding grants a matching rule; NO_OPINION otherwise."""
        for binding in self.caches["ClusterRoleBinding"].list(Filter(), ordered=False):
            assert isinstance(binding, rbac_pb2.ClusterRoleBinding)
            if any(subject_matches(s, attrs, "") for s in binding.subjects) and any(
                rule_allows(r, attrs) for r in self.rules_of(binding.role_ref, "")
            ):
                return Decision.ALLOW, f'allowed by ClusterRoleBinding "{binding.metadata.name}"'
        if attrs.namespace:
            for binding in self.caches["RoleBinding"].list(Filter(namespace=attrs.namespace), ordered=False):
                assert isinstance(binding, rbac_pb2.RoleBinding)
                if any(subject_matches(s, attrs, attrs.namespace) for s in binding.subjects) and any(
                    rule_allows(r, attrs) for r in self.rules_of(binding.role_ref, attrs.namespace)
                ):
                    return Decision.ALLOW, f'allowed by RoleBinding "{binding.metadata.name}"'
        return Decision.NO_OPINION, "no RBAC rule allows it"
