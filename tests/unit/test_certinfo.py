"""controlplane.certinfo reads a certificate's subject and validity without ``cryptography`` (agents keep
~9 MiB less resident). The oracle is ``cryptography``'s own parser, on certificates it builds with random
names (Unicode, several organisations, a CN in any position) and validity times on both sides of 2050 (UTCTime
vs GeneralizedTime); malformed input is a CertificateError, never an IndexError or a hang."""

from __future__ import annotations

import contextlib
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane import certinfo, pki

KEY = ec.generate_private_key(ec.SECP256R1())
_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
_when = st.datetimes(min_value=datetime.datetime(1951, 1, 1), max_value=datetime.datetime(2200, 1, 1))


def _certificate(cn: str, orgs: list[str], start: datetime.datetime, days: int, cn_first: bool) -> x509.Certificate:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    cn_attr = x509.NameAttribute(NameOID.COMMON_NAME, cn)
    name = x509.Name([cn_attr, *attrs] if cn_first else [*attrs, cn_attr])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")]))
        .public_key(KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .sign(KEY, hashes.SHA256())
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_text, st.lists(_text, max_size=4), _when, st.integers(1, 20000), st.booleans())
def test_subject_and_validity_match_cryptographys_reading(
    cn: str, orgs: list[str], start: datetime.datetime, days: int, cn_first: bool
) -> None:
    cert = _certificate(cn, orgs, start, days, cn_first)
    info = certinfo.read_pem(cert.public_bytes(serialization.Encoding.PEM))
    assert (info.user, info.groups) == (pki.identity_of(cert).user, pki.identity_of(cert).groups)
    assert (info.not_before, info.not_after) == (cert.not_valid_before_utc, cert.not_valid_after_utc)
    now = cert.not_valid_before_utc + datetime.timedelta(days=days / 2)
    assert info.remaining_fraction(now) == pki.remaining_fraction(cert, now)


def test_a_real_node_certificate() -> None:
    ca = pki.CertificateAuthority.create("test-ca")
    cert, _ = ca.issue_pair(
        pki.Identity("system:node:n1", (pki.NODES_GROUP,)), server=True, sans=pki.Sans(["n1"], ["10.0.0.1"])
    )
    info = certinfo.read_pem(pki.cert_pem(cert) + pki.cert_pem(ca.cert))  # a chain: the first one counts
    assert (info.user, info.groups) == ("system:node:n1", ("system:nodes",))
    assert info.lifetime() == pki.lifetime(cert)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 599))
def test_malformed_der_is_a_certificate_error(noise: bytes, cut: int) -> None:
    der = _certificate("x", ["o"], datetime.datetime(2030, 1, 1), 10, True).public_bytes(serialization.Encoding.DER)
    for data in (noise, der[:cut], der[:cut] + noise, bytes([0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]) + noise):
        with contextlib.suppress(certinfo.CertificateError):  # anything else (IndexError, ...) fails the test
            certinfo.read_der(data)


def test_what_is_not_pem_is_refused() -> None:
    with pytest.raises(certinfo.CertificateError, match="no PEM"):
        certinfo.read_pem(b"hello")
    with pytest.raises(certinfo.CertificateError, match="bad PEM"):
        certinfo.read_pem(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
    with pytest.raises(certinfo.CertificateError, match="longer than"):
        certinfo.read_pem(b"-----BEGIN CERTIFICATE-----\n" + b"A" * 70000 + b"\n-----END CERTIFICATE-----\n")
