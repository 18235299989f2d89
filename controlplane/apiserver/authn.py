"""Who is calling: client certificates, static bearer tokens, and bootstrap (join) tokens.

A request is authenticated by the first of:

- the client certificate the TLS handshake verified (CN = user, each O = a group), checked again here
  against the client CA so that an expired or foreign certificate can never pass;
- ``authorization: Bearer <token>`` metadata: a token of the static token file, or a bootstrap token
  ``<id>.<secret>`` stored as Secret ``navarch-system/bootstrap-token-<id>`` (user ``system:bootstrap:<id>``,
  group ``system:bootstrappers``), refused once expired.

On a plain-text (loopback, ``navarch up``) server every caller is ``system:insecure`` in
``system:masters``, as Kubernetes' old insecure port was. Anything else is UNAUTHENTICATED.
"""

from __future__ import annotations

import csv
import datetime
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc.aio
from cryptography import x509

from controlplane import pki
from controlplane.api import namespaces
from controlplane.api.errors import UnauthenticatedError
from controlplane.api.pb import core_pb2

AUTHENTICATED_GROUP = "system:authenticated"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"
BOOTSTRAP_USER_PREFIX = "system:bootstrap:"
BOOTSTRAP_NAMESPACE = namespaces.SYSTEM
BOOTSTRAP_SECRET_PREFIX = "bootstrap-token-"
BOOTSTRAP_SECRET_TYPE = "bootstrap.navarch.io/token"
INSECURE_USER = "system:insecure"

BOOTSTRAP_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
_MAX_TOKEN_CHARS = 4096


@dataclass(frozen=True)
class UserInfo:
    """An authenticated caller."""

    name: str
    groups: tuple[str, ...] = ()
    method: str = ""
    """How it was authenticated: x509, token, bootstrap-token or insecure."""

    def in_group(self, group: str) -> bool:
        """Whether the user is in ``group``."""
        return group in self.groups


def load_token_file(path: str) -> dict[str, UserInfo]:
    """A static token file, Kubernetes' format: ``token,user,uid[,"group1,group2"]`` per line."""
    tokens: dict[str, UserInfo] = {}
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ValueError(f"cannot read the token file {path}: {err.strerror or err}") from None
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or row[0].startswith("#"):
            continue
        if len(row) < 3 or not row[0].strip() or not row[1].strip():
            raise ValueError(f"{path}:{number}: expected token,user,uid[,groups]")
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        tokens[row[0].strip()] = UserInfo(row[1].strip(), (*groups, AUTHENTICATED_GROUP), "token")
    return tokens


def _metadata(context: grpc.aio.ServicerContext, key: str) -> list[str]:
    values: list[str] = []
    for item in context.invocation_metadata() or ():
        k, v = item[0], item[1]
        if k.lower() == key:
            values.append(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
    return values


class Authenticator:
    """Turns a call's TLS peer and metadata into a ``UserInfo`` or an UNAUTHENTICATED error."""

    def __init__(
        self,
        *,
        insecure: bool = False,
        client_cas: Sequence[x509.Certificate] = (),
        tokens: dict[str, UserInfo] | None = None,
        bootstrap_secret: Callable[[str], core_pb2.Secret | None] | None = None,
        now: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self.insecure = insecure
        self.client_cas = list(client_cas)
        self.tokens = tokens or {}
        self.bootstrap_secret = bootstrap_secret
        self._now = now or (lambda: datetime.datetime.now(datetime.UTC))
        self._verified: dict[bytes, tuple[UserInfo, datetime.datetime]] = {}
        """Certificates already checked, with their expiry: a signature check per call costs a third of a
        small request."""

    def authenticate(self, context: grpc.aio.ServicerContext) -> UserInfo:
        """The caller, or ``UnauthenticatedError`` saying what was wrong (never what a valid secret is)."""
        if self.insecure:
            return UserInfo(INSECURE_USER, (pki.MASTERS_GROUP, AUTHENTICATED_GROUP), "insecure")
        auth = context.auth_context() or {}
        pems = auth.get("x509_pem_cert") or []
        if pems:
            return self.from_certificate(pems[0])
        headers = _metadata(context, "authorization")
        if not headers:
            raise UnauthenticatedError("no credentials: present a client certificate or an authorization bearer token")
        if len(headers) > 1:
            raise UnauthenticatedError("more than one authorization header")
        return self.from_header(headers[0])

    def from_certificate(self, pem: bytes | str) -> UserInfo:
        """The user a client certificate names, after checking it against the client CA."""
        data = pem.encode() if isinstance(pem, str) else pem
        now = self._now()
        known = self._verified.get(data)
        if known is not None and now < known[1]:
            return known[0]
        try:
            identity = pki.verify_client_certificate(data, self.client_cas, now)
        except pki.CertificateError as err:
            raise UnauthenticatedError(f"client certificate refused: {err}") from None
        user = UserInfo(identity.user, (*identity.groups, AUTHENTICATED_GROUP), "x509")
        if len(self._verified) >= 10_000:
            self._verified.clear()
        self._verified[data] = (user, pki.load_cert(data).not_valid_after_utc)
        return user

    def from_header(self, header: str) -> UserInfo:
        """The user an ``authorization`` header's bearer token belongs to."""
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UnauthenticatedError('the authorization header must be "Bearer <token>"')
        if len(token) > _MAX_TOKEN_CHARS:
            raise UnauthenticatedError("the bearer token is too long")
        for known, user in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return user
        match = BOOTSTRAP_TOKEN.match(token)
        if match and self.bootstrap_secret is not None:
            return self._bootstrap(match.group(1), match.group(2))
        raise UnauthenticatedError("the bearer token is not valid")

    def _bootstrap(self, token_id: str, secret: str) -> UserInfo:
        assert self.bootstrap_secret is not None
        stored = self.bootstrap_secret(BOOTSTRAP_SECRET_PREFIX + token_id)
        if stored is None or stored.type != BOOTSTRAP_SECRET_TYPE:
            raise UnauthenticatedError(f'bootstrap token "{token_id}" is not known')
        expected = stored.data.get("token-secret", b"")
        if not hmac.compare_digest(expected, secret.encode()):
            raise UnauthenticatedError(f'bootstrap token "{token_id}": wrong secret')
        if stored.data.get("usage-bootstrap-authentication", b"") != b"true":
            raise UnauthenticatedError(f'bootstrap token "{token_id}" is not for authentication')
        expiration = stored.data.get("expiration", b"").decode("utf-8", "replace")
        if expiration:
            try:
                expires = datetime.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
            except ValueError:
                raise UnauthenticatedError(f'bootstrap token "{token_id}" has an unreadable expiration') from None
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=datetime.UTC)
            if self._now() >= expires:
                raise UnauthenticatedError(f'bootstrap token "{token_id}" expired at {expiration}')
        extra = stored.data.get("auth-extra-groups", b"").decode("utf-8", "replace")
        groups = [g.strip() for g in extra.split(",") if g.strip().startswith("system:bootstrappers:")]
        return UserInfo(
            BOOTSTRAP_USER_PREFIX + token_id, (BOOTSTRAPPERS_GROUP, *groups, AUTHENTICATED_GROUP), "bootstrap-token"
        )
