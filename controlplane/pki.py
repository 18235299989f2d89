"""Certificates: the cluster's CAs, issuing and checking certificates, CSRs, and the CA pin.

ECDSA P-256 throughout. Two CAs: the cluster CA signs every certificate of the Navarch API (servers,
components, users, nodes); a separate etcd CA signs etcd's and the API servers' etcd client
certificates, so that no user or node certificate can ever talk to etcd directly.

An identity is the certificate's subject: CN is the user name, each O is a group (Kubernetes' rule).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane import certinfo

# Defined once in certinfo (which agents read without cryptography), re-exported here.
from controlplane.certinfo import APISERVER_USER as APISERVER_USER
from controlplane.certinfo import CLOCK_SKEW as CLOCK_SKEW
from controlplane.certinfo import NODE_USER_PREFIX as NODE_USER_PREFIX
from controlplane.certinfo import NODES_GROUP as NODES_GROUP

DAY = 86_400.0
DEFAULT_VALIDITY = 365 * DAY
DEFAULT_CA_VALIDITY = 10 * 365 * DAY
APISERVERS_GROUP = "system:apiservers"
SCHEDULER_USER = "system:navarch-scheduler"
CONTROLLER_MANAGER_USER = "system:navarch-controller-manager"
MASTERS_GROUP = "system:masters"
MONITORING_GROUP = "system:monitoring"
"""Scrapers (Prometheus): the bootstrap ClusterRole of that name lets them read every component's /metrics."""
MONITORING_USER = "navarch:prometheus"
"""The scraper identity ``navarch pki init`` issues (``monitoring.pem``) and ``navarch up`` configures."""


class CertificateError(ValueError):
    """A certificate, key or CSR is malformed, untrusted, expired, or not allowed."""


@dataclass(frozen=True)
class Identity:
    """Who a certificate names: CN is the user, O the groups."""

    user: str
    groups: tuple[str, ...] = ()


@dataclass
class Sans:
    """Subject alternative names: DNS names and IP addresses."""

    dns: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, items: Iterable[str]) -> Sans:
        """Sort each entry into an IP address or a DNS name."""
        out = cls()
        for item in items:
            item = item.strip()
            if not item:
                continue
            try:
                out.ips.append(str(ipaddress.ip_address(item)))
            except ValueError:
                out.dns.append(item)
        return out

    def plus(self, other: Sans) -> Sans:
        """Both lists, without repeats."""
        return Sans(list(dict.fromkeys(self.dns + other.dns)), list(dict.fromkeys(self.ips + other.ips)))

    def general_names(self) -> list[x509.GeneralName]:
        """As x509 general names."""
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in self.ips]
        return names


LOCAL_SANS = Sans(["localhost"], ["127.0.0.1"])


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    """A certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(data: bytes) -> ec.EllipticCurvePrivateKey:
    """An ECDSA private key from PEM."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise CertificateError(f"not a PEM private key: {err}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError("the private key is not an ECDSA key")
    return key


def load_cert(data: bytes) -> x509.Certificate:
    """The first certificate of a PEM bundle."""
    certs = load_certs(data)
    return certs[0]


def load_certs(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (at least one)."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise CertificateError(f"not a PEM certificate: {err}") from None
    if not certs:
        raise CertificateError("no certificate in the PEM data")
    return certs


def ca_cert_hash(cert: x509.Certificate) -> str:
    """The pin agents use to trust a CA they have not seen yet: sha256 of its public key (SubjectPublicKeyInfo),
    as kubeadm prints it."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def identity_of(cert: x509.Certificate) -> Identity:
    """The certificate's user (CN) and groups (O)."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    groups = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return Identity(str(cns[0].value) if cns else "", groups)


def _subject(identity: Identity) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in identity.groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, identity.user))
    return x509.Name(attrs)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate with its key: issues certificates and signs CSRs."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str, validity: float = DEFAULT_CA_VALIDITY) -> CertificateAuthority:
        """A new self-signed CA."""
        key = new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(seconds=validity))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_file: str | Path, key_file: str | Path) -> CertificateAuthority:
        """A CA from its PEM files (an existing CA works, as long as its key is ECDSA)."""
        cert = load_cert(Path(cert_file).read_bytes())
        key = load_key(Path(key_file).read_bytes())
        if cert.public_key() != key.public_key():
            raise CertificateError(f"{key_file} is not the key of {cert_file}")
        return cls(cert, key)

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        identity: Identity,
        *,
        client: bool = True,
        server: bool = False,
        sans: Sans | None = None,
        validity: float = DEFAULT_VALIDITY,
    ) -> x509.Certificate:
        """A leaf certificate for ``identity``; never valid beyond the CA itself."""
        now = _now()
        not_after = min(now + datetime.timedelta(seconds=validity), self.cert.not_valid_after_utc)
        usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + (
            [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(_subject(identity))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        names = sans.general_names() if sans else []
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue_pair(self, identity: Identity, **kwargs: object) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A new key and its certificate (see ``issue``)."""
        key = new_key()
        return self.issue(key.public_key(), identity, **kwargs), key  # type: ignore[arg-type]


def make_csr(key: ec.EllipticCurvePrivateKey, identity: Identity, sans: Sans | None = None) -> bytes:
    """A PEM certificate signing request for ``identity``."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(identity))
    names = sans.general_names() if sans else []
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class CertificateRequest:
    """A parsed, signature-checked CSR."""

    identity: Identity
    public_key: ec.EllipticCurvePublicKey
    sans: Sans


def parse_csr(data: bytes) -> CertificateRequest:
    """Parse a PEM CSR and check its self-signature; ``CertificateError`` otherwise."""
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as err:
        raise CertificateError(f"not a PEM certificate signing request: {err}") from None
    if not csr.is_signature_valid:
        raise CertificateError("the certificate signing request's signature does not verify")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise CertificateError("the certificate signing request must carry an ECDSA public key")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    groups = tuple(str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    sans = Sans()
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = Sans(
            [str(d) for d in ext.get_values_for_type(x509.DNSName)],
            [str(i) for i in ext.get_values_for_type(x509.IPAddress)],
        )
    except x509.ExtensionNotFound:
        pass
    return CertificateRequest(Identity(str(cns[0].value) if cns else "", groups), public_key, sans)


def verify_client_certificate(
    data: bytes, cas: Sequence[x509.Certificate], now: datetime.datetime | None = None
) -> Identity:
    """The identity of a client certificate issued directly by one of ``cas``, valid now and meant for client
    authentication; ``CertificateError`` saying why not otherwise."""
    cert = load_cert(data)
    now = now or _now()
    for ca in cas:
        if cert.issuer != ca.subject:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        break
    else:
        raise CertificateError("the client certificate is not signed by the cluster CA")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        until = f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
        raise CertificateError(f"the client certificate expired or is not valid yet (valid until {until})")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise CertificateError("the certificate is not meant for client authentication")
    identity = identity_of(cert)
    if not identity.user:
        raise CertificateError("the client certificate has no common name (the user name)")
    return identity


def write_pem(path: Path, data: bytes, *, secret: bool = False) -> Path:
    """Write a PEM file (mode 0600 for keys), replacing any file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)
    return path


def write_pair(
    directory: Path,
    name: str,
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    *,
    chain: Sequence[x509.Certificate] = (),
) -> tuple[Path, Path]:
    """``NAME.pem`` (with ``chain`` appended) and ``NAME-key.pem`` in ``directory``."""
    body = cert_pem(cert) + b"".join(cert_pem(c) for c in chain)
    return write_pem(directory / f"{name}.pem", body), write_pem(
        directory / f"{name}-key.pem", key_pem(key), secret=True
    )


def remaining_fraction(cert: x509.Certificate, now: datetime.datetime | None = None) -> float:
    """How much of the certificate's lifetime is left (1.0 new, 0.0 expired); see ``certinfo``."""
    return certinfo.remaining_fraction(cert.not_valid_before_utc, cert.not_valid_after_utc, now or _now())


def lifetime(cert: x509.Certificate) -> float:
    """Seconds from when the certificate was made to when it expires."""
    return certinfo.lifetime(cert.not_valid_before_utc, cert.not_valid_after_utc)
