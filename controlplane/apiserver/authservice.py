"""The ``navarch.v1.Auth`` service: access reviews (``navarch auth can-i``), who-am-i, and node certificates.

Node certificates: a joining agent (authenticated by a bootstrap token) or a node renewing its own
certificate sends a CSR for ``CN=system:node:<name>, O=system:nodes``; the API server signs it with the
cluster CA (``--cluster-signing-cert-file``/``--cluster-signing-key-file``). The certificate serves both as
the agent's client certificate and as its endpoint's serving certificate (DNS name = node name).
"""

from __future__ import annotations

import logging
from typing import TypeVar

import grpc
import grpc.aio

from controlplane import pki
from controlplane.api.errors import ForbiddenError, InvalidError, UnavailableError
from controlplane.api.pb import auth_pb2, auth_pb2_grpc
from controlplane.api.validation import Errors, check_dns1123_subdomain
from controlplane.apiserver.authn import AUTHENTICATED_GROUP, UserInfo
from controlplane.apiserver.authz import Attributes, AuthorizerChain
from controlplane.apiserver.guard import current_user
from controlplane.apiserver.requestinfo import review_attributes
from controlplane.apiserver.service import unary_handler

log = logging.getLogger(__name__)
R = TypeVar("R")

CSR_GROUP = "certificates.k8s.io"


class NodeCertificateSigner:
    """Signs node CSRs with the cluster CA."""

    def __init__(self, ca: pki.CertificateAuthority, validity: float) -> None:
        self.ca = ca
        self.validity = validity

    def sign(self, csr_pem: bytes, requester: UserInfo) -> bytes:
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
        if not request.verb or not request.resource:
            raise InvalidError("verb and resource are required (e.g. verb=create, resource=pods)")
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
        cert = self.signer.sign(request.csr_pem, requester)
        return auth_pb2.NodeCertificateResponse(certificate_pem=cert, ca_pem=pki.cert_pem(self.signer.ca.cert))
