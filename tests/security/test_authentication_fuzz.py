"""Property tests of the authentication path: whatever arrives — malformed metadata, certificates of another CA,
truncated or garbled tokens — the answer is UNAUTHENTICATED, never INTERNAL and never a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane import pki, transport
from controlplane.api.errors import UnauthenticatedError
from controlplane.api.pb import api_pb2, api_pb2_grpc, core_pb2
from controlplane.apiserver.authn import BOOTSTRAP_SECRET_TYPE, Authenticator, UserInfo
from tests.security.conftest import STATIC_TOKEN, SecureCluster

VALID_BOOTSTRAP = "abcdef.0123456789abcdef"


def _bootstrap_secret(name: str) -> core_pb2.Secret | None:
    if name != "bootstrap-token-abcdef":
        return None
    s = core_pb2.Secret(type=BOOTSTRAP_SECRET_TYPE)
    s.data["token-secret"] = b"0123456789abcdef"
    s.data["usage-bootstrap-authentication"] = b"true"
    s.data["expiration"] = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    return s


OWN_CA = pki.CertificateAuthority.create("own-ca")
OTHER_CA = pki.CertificateAuthority.create("other-ca")
# Same subject as ours, different key: only the signature tells them apart.
IMPOSTOR_CA = pki.CertificateAuthority.create("own-ca")
AUTHENTICATOR = Authenticator(
    client_cas=[OWN_CA.cert],
    tokens={STATIC_TOKEN: UserInfo("ops", ("system:authenticated",), "token")},
    bootstrap_secret=_bootstrap_secret,
)


def _cert(ca: pki.CertificateAuthority, user: str, **kwargs: object) -> bytes:
    cert, _key = ca.issue_pair(pki.Identity(user, ("g",)), **kwargs)
    return pki.cert_pem(cert)


FOREIGN_CERTS = [
    _cert(OTHER_CA, "admin"),
    _cert(IMPOSTOR_CA, "admin"),
    _cert(OWN_CA, "expired", validity=-60),
    _cert(OWN_CA, "server-only", client=False, server=True),
]

tokens = st.one_of(
    st.text(max_size=80),
    st.sampled_from([STATIC_TOKEN, VALID_BOOTSTRAP]).flatmap(
        lambda t: st.integers(0, len(t) - 1).map(lambda n: t[:n])  # every truncation
    ),
    st.from_regex(r"[a-z0-9]{6}\.[a-z0-9]{16}", fullmatch=True).filter(lambda t: t != VALID_BOOTSTRAP),
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
)
headers = st.one_of(
    tokens.map(lambda t: f"Bearer {t}"),
    tokens,
    st.tuples(st.sampled_from(["bearer", "Basic", "BEARER ", "Bearer\t", ""]), tokens).map(" ".join),
)


@settings(max_examples=300, deadline=None)
@given(headers)
def test_any_authorization_header_but_a_known_token_is_unauthenticated(header: str) -> None:
    try:
        user = AUTHENTICATOR.from_header(header)
    except UnauthenticatedError:
        return
    # Only the exact known tokens authenticate (the scheme is case-insensitive, surrounding blanks ignored).
    assert header.strip().split(None, 1)[-1].strip() in (STATIC_TOKEN, VALID_BOOTSTRAP), (header, user)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.sampled_from(FOREIGN_CERTS),
        st.sampled_from(FOREIGN_CERTS).flatmap(lambda pem: st.integers(0, len(pem) - 1).map(lambda n: pem[:n])),
        st.binary(max_size=512),
        st.binary(max_size=64).map(lambda b: b"-----BEGIN CERTIFICATE-----\n" + b + b"\n-----END CERTIFICATE-----\n"),
    )
)
def test_certificates_of_another_ca_or_garbage_are_unauthenticated(pem: bytes) -> None:
    with pytest.raises(UnauthenticatedError):
        AUTHENTICATOR.from_certificate(pem)


def test_a_certificate_of_the_cluster_ca_authenticates() -> None:
    user = AUTHENTICATOR.from_certificate(_cert(OWN_CA, "alice"))
    assert user.name == "alice" and "g" in user.groups and user.method == "x509"


metadata_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=100
)  # gRPC metadata values are printable ASCII


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.sampled_from(["authorization", "x-user", "authorization-bin"]), metadata_values), max_size=3)
)
async def test_the_token_port_answers_malformed_metadata_with_unauthenticated(
    secure: SecureCluster, metadata: list[tuple[str, str]]
) -> None:
    sent = [(k, v.encode() if k.endswith("-bin") else v) for k, v in metadata]
    channel = transport.make_channel([secure.token_endpoint], transport.ChannelTLS(secure.pki.ca))
    try:
        await api_pb2_grpc.ApiStub(channel).Get(
            api_pb2.GetRequest(kind="namespaces", name="default"), metadata=sent, timeout=5
        )
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (metadata, err.code(), err.details())
    else:
        raise AssertionError(f"{metadata} was let in")
    finally:
        await channel.close()
