"""The ``navarch.v1.Auth`` service: access reviews (``navarch auth can-i``), who-am-i, and node certificates.

Node certificates: a joining agent (authenticated by a bootstrap token) or a node renewing its own
certificate sends a CSR for ``CN=system:node:<name>, O=system:nodes``; the API server signs it with the
cluster CA (``--cluster-signing-cert-file``/``--cluster-signing-key-file``). The certificate serves both as
the agent's client certificate and as its endpoint's serving certificate (DNS name = node name).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import TypeVar

import grpc
import grpc.aio

from controlplane import pki
from controlplane.api.errors import ForbiddenError, InvalidError, UnavailableError
from controlplane.api.pb import auth_pb2, auth_pb2_grpc
from controlplane.api.validation import Errors, check_dns1123_subdomain
from controlplane.apiserver.authn import AUTHENTICATED_GROUP, UserInfo
from controlplane.apiserver.authz import Attributes, AuthorizerChain
from controlplane.apiserver.guard import current_user, peer_ip
from controlplane.apiserver.requestinfo import review_attributes
from controlplane.apiserver.service import unary_handler

log = logging.getLogger(__name__)
R = TypeVar("R")

CSR_GROUP = "certificates.k8s.io"


def _loopback(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def _normal_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


class NodeCertificateSigner:
    """Signs node CSRs with the cluster CA, granting no more names than it can check.

    A node certificate is for client auth (the agent calling the API server) and server auth (its own
    endpoint, which only the API server calls). Its IP addresses must be the node's: the addresses its Node
    has registered, or, before the Node exists (the first join), the address the request came from — never
    any other, so a join token or a compromised worker cannot get a certificate naming another host (an API
    server's address, say). Its only DNS name is the node's name."""

    def __init__(
        self,
        ca: pki.CertificateAuthority,
        validity: float,
        node_addresses: Callable[[str], list[str] | None] = lambda node: None,
    ) -> None:
        self.ca = ca
        self.validity = validity
        self.node_addresses = node_addresses
        """The IP addresses a registered Node reports (None: no such Node yet)."""

    def _check_ips(self, node: str, ips: list[str], peer_ip: str) -> None:
        registered = self.node_addresses(node)
        allowed = {_normal_ip(a) for a in (registered if registered is not None else [peer_ip]) if a}
        for ip in ips:
            if _normal_ip(ip) in allowed:
                continue
            if registered is None and _loopback(peer_ip) and _loopback(ip):
                continue  # agents on the API server's own host connect from 127.0.0.1 whatever their node IP
            where = (
                f"the addresses Node {node} has registered ({', '.join(sorted(registered)) or 'none'})"
                if registered is not None
                else f"the address this request came from ({peer_ip or 'unknown'}): Node {node} is not registered"
            )
            raise InvalidError(f"csrPem: IP address {ip} is not one of {where}", field="csrPem")

    def sign(self, csr_pem: bytes, requester: UserInfo, peer_ip: str = "") -> bytes:
        """The signed certificate (PEM) for a node CSR the requester may ask for; errors name the field."""
        try:
            csr = pki.parse_csr(csr_pem)
        except pki.CertificateError as err:
            raise InvalidError(f"csrPem: {err}") from None
        user = csr.identity.user
        if not user.startswith(pki.NODE_USER_PREFIX) or csr.identity.groups != (pki.NODES_GROUP,):
            raise InvalidError(
                f"csrPem: subject must be CN={pki.NODE_USER_PREFIX}<node name>, O={pki.NODES_GROUP} "
                f"(got CN={user!r}, O={','.join(csr.identity.groups)!r})"
            )
        node = user[len(pki.NODE_USER_PREFIX) :]
        errs = Errors()
        check_dns1123_subdomain(errs, "csrPem.subject.CN", node)
        if errs.items:
            raise InvalidError("; ".join(errs.items))
        if requester.in_group(pki.NODES_GROUP) and requester.name != user:
            raise ForbiddenError(f'user "{requester.name}" may renew only its own certificate, not one for {user}')
        if any(d != node for d in csr.sans.dns):
            raise InvalidError(f"csrPem: the only DNS name a node certificate may carry is the node name ({node})")
        self._check_ips(node, csr.sans.ips, peer_ip)
        cert = self.ca.issue(
            csr.public_key, csr.identity, client=True, server=True, sans=csr.sans, validity=self.validity
        )
        log.info("signed a node certificate for %s (requested by %s)", user, requester.name)
        return pki.cert_pem(cert)


class AuthService(auth_pb2_grpc.AuthServicer):
    """AccessReview, WhoAmI and SignNodeCertificate."""

    def __init__(self, authorizer: AuthorizerChain, signer: NodeCertificateSigner | None) -> None:
        self.authorizer = authorizer
        self.signer = signer

    @unary_handler
    async def WhoAmI(
        self, request: auth_pb2.WhoAmIRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.WhoAmIResponse:
        user = current_user.get()
        return auth_pb2.WhoAmIResponse(user=user.name, groups=list(user.groups), authenticated_by=user.method)

    @unary_handler
    async def AccessReview(
        self, request: auth_pb2.AccessReviewRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.AccessReviewResponse:
        caller = current_user.get()
        subject = caller
        if request.user and (request.user != caller.name or list(request.groups)):
            await self.authorizer.check(
                Attributes(caller, "create", "subjectaccessreviews", api_group="authorization.k8s.io")
            )
            subject = UserInfo(request.user, (*request.groups, AUTHENTICATED_GROUP), "review")
        if request.non_resource_url:
            if request.resource or not request.non_resource_url.startswith("/") or len(request.non_resource_url) > 1024:
                raise InvalidError("non_resource_url is a path (/metrics) asked instead of a resource")
            attrs = Attributes(subject, request.verb or "get", "", path=request.non_resource_url)
        elif not request.verb or not request.resource:
            raise InvalidError("verb and resource are required (e.g. verb=create, resource=pods)")
        else:
            attrs = review_attributes(subject, request.verb, request.resource, request.namespace, request.name)
        allowed, reason = await self.authorizer.decide(attrs)
        return auth_pb2.AccessReviewResponse(
            allowed=allowed, reason=reason, user=subject.name, groups=list(subject.groups)
        )

    @unary_handler
    async def SignNodeCertificate(
        self, request: auth_pb2.NodeCertificateRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.NodeCertificateResponse:
        requester = current_user.get()
        sub = "selfnodeclient" if requester.in_group(pki.NODES_GROUP) else "nodeclient"
        await self.authorizer.check(
            Attributes(requester, "create", "certificatesigningrequests", sub, api_group=CSR_GROUP)
        )
        if self.signer is None:
            raise UnavailableError(
                "this API server signs no node certificates: start it with --cluster-signing-cert-file and "
                "--cluster-signing-key-file"
            )
        cert = self.signer.sign(request.csr_pem, requester, peer_ip(context))
        return auth_pb2.NodeCertificateResponse(certificate_pem=cert, ca_pem=pki.cert_pem(self.signer.ca.cert))
