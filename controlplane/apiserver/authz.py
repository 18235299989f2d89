"""What a caller may do: request attributes, decisions, and the chain of authorizers.

The chain is Kubernetes' ``Node,RBAC``: members of ``system:masters`` may do anything; the node authorizer
decides for agents; RBAC for everyone else. Nothing allows → PERMISSION_DENIED naming user, verb and resource.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from controlplane import pki
from controlplane.api.errors import ForbiddenError
from controlplane.apiserver.authn import UserInfo


class Decision(Enum):
    """An authorizer's answer."""

    ALLOW = "allow"
    DENY = "deny"
    """Denied, whatever later authorizers would say."""
    NO_OPINION = "no-opinion"


@dataclass(frozen=True)
class Attributes:
    """One request as authorization sees it."""

    user: UserInfo
    verb: str
    """get, list, watch, create, update, patch, delete."""
    resource: str
    """Plural name: pods, deployments, certificatesigningrequests ..."""
    subresource: str = ""
    """status, log, exec, nodeclient ..."""
    namespace: str = ""
    name: str = ""
    api_group: str = ""
    field_selector: str = ""
    path: str = ""
    """A non-resource request's path (``/metrics``); resource is then empty."""

    @property
    def full_resource(self) -> str:
        """``pods`` or ``pods/log``."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def describe(self) -> str:
        """``user "bob" cannot create resource "deployments" in API group "apps" in namespace "web"``."""
        if self.path:
            return f'user "{self.user.name}" cannot {self.verb} path "{self.path}"'
        text = f'user "{self.user.name}" cannot {self.verb} resource "{self.full_resource}"'
        if self.api_group:
            text += f' in API group "{self.api_group}"'
        if self.name:
            text += f' named "{self.name}"'
        text += f' in namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        return text


class Authorizer(Protocol):
    """Decides one request."""

    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        """ALLOW, DENY or NO_OPINION, with the reason."""
        ...


class AuthorizerChain:
    """Superusers, then each authorizer in turn; the first ALLOW or DENY wins, and silence denies."""

    def __init__(self, authorizers: Sequence[Authorizer]) -> None:
        self.authorizers = list(authorizers)

    async def decide(self, attrs: Attributes) -> tuple[bool, str]:
        """Whether the request is allowed, and why (or why not)."""
        if attrs.user.in_group(pki.MASTERS_GROUP):
            return True, f"{attrs.user.name} is in {pki.MASTERS_GROUP}"
        reasons: list[str] = []
        for authorizer in self.authorizers:
            decision, reason = await authorizer.authorize(attrs)
            if decision is Decision.ALLOW:
                return True, reason
            if decision is Decision.DENY:
                return False, reason
            if reason:
                reasons.append(reason)
        return False, "; ".join(reasons) or "no rule allows it"

    async def check(self, attrs: Attributes) -> None:
        """Raise PERMISSION_DENIED naming user, verb and resource unless allowed."""
        allowed, reason = await self.decide(attrs)
        if not allowed:
            raise ForbiddenError(f"{attrs.describe()}: {reason}")
