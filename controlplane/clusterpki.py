"""The files ``navarch pki init DIR`` makes, and where each component finds its own.

::

    DIR/ca.pem, ca-key.pem                      cluster CA (signs everything below but etcd's)
    DIR/apiserver.pem, -key.pem                 API server serving cert (SANs from flags), chain includes the CA
    DIR/apiserver-agent-client.pem, -key.pem    the API server towards agents (CN system:apiserver)
    DIR/scheduler.pem, -key.pem                 CN system:navarch-scheduler (client and server)
    DIR/controller-manager.pem, -key.pem        CN system:navarch-controller-manager (client and server)
    DIR/admin.pem, -key.pem                     CN admin, O system:masters
    DIR/monitoring.pem, -key.pem                CN navarch:prometheus, O system:monitoring (scrapes /metrics)
    DIR/etcd/ca.pem, ca-key.pem                 etcd CA: only etcd and the API servers hold its certificates
    DIR/etcd/server.pem, -key.pem               etcd members' client-port certificate (SANs from flags)
    DIR/etcd/peer.pem, -key.pem                 etcd members' peer certificate
    DIR/apiserver-etcd-client.pem, -key.pem     the API server towards etcd
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controlplane.pki import (
    APISERVER_USER,
    APISERVERS_GROUP,
    CONTROLLER_MANAGER_USER,
    DEFAULT_CA_VALIDITY,
    DEFAULT_VALIDITY,
    LOCAL_SANS,
    MASTERS_GROUP,
    MONITORING_GROUP,
    MONITORING_USER,
    SCHEDULER_USER,
    CertificateAuthority,
    CertificateError,
    Identity,
    Sans,
    cert_pem,
    key_pem,
    write_pair,
    write_pem,
)


@dataclass(frozen=True)
class ClusterPki:
    """Paths of a cluster's PKI directory."""

    root: Path

    def cert(self, name: str) -> str:
        """``NAME.pem``."""
        return str(self.root / f"{name}.pem")

    def key(self, name: str) -> str:
        """``NAME-key.pem``."""
        return str(self.root / f"{name}-key.pem")

    @property
    def ca(self) -> str:
        """The cluster CA certificate."""
        return self.cert("ca")

    @property
    def ca_key(self) -> str:
        """The cluster CA key (the API servers sign node certificates with it)."""
        return self.key("ca")

    @property
    def etcd_ca(self) -> str:
        """The etcd CA certificate."""
        return self.cert("etcd/ca")


def init_cluster_pki(
    directory: Path,
    *,
    apiserver_sans: Sans | None = None,
    etcd_sans: Sans | None = None,
    validity: float = DEFAULT_VALIDITY,
    ca_validity: float = DEFAULT_CA_VALIDITY,
    existing_ca: tuple[str, str] | None = None,
) -> ClusterPki:
    """Create every certificate of a cluster in ``directory``; refuses to overwrite an existing CA key.

    ``existing_ca`` (cert file, key file) signs with a CA you already have instead of a new one.
    """
    pki = ClusterPki(directory)
    if (directory / "ca-key.pem").exists():
        raise CertificateError(f"{directory} already holds a CA key (ca-key.pem); choose an empty directory")
    api_sans = LOCAL_SANS.plus(apiserver_sans or Sans())
    etcd_all = LOCAL_SANS.plus(etcd_sans or Sans())
    if existing_ca:
        ca = CertificateAuthority.load(*existing_ca)
    else:
        ca = CertificateAuthority.create("navarch-ca", ca_validity)
    write_pem(directory / "ca.pem", cert_pem(ca.cert))
    write_pem(directory / "ca-key.pem", key_pem(ca.key), secret=True)
    etcd_ca = CertificateAuthority.create("navarch-etcd-ca", ca_validity)
    write_pem(directory / "etcd" / "ca.pem", cert_pem(etcd_ca.cert))
    write_pem(directory / "etcd" / "ca-key.pem", key_pem(etcd_ca.key), secret=True)

    def leaf(authority: CertificateAuthority, name: str, identity: Identity, **kwargs: object) -> None:
        cert, key = authority.issue_pair(identity, validity=validity, **kwargs)
        chain = [authority.cert] if kwargs.get("server") else []
        write_pair(directory, name, cert, key, chain=chain)

    # The serving certificate carries the CA in its chain: a joining agent pins the CA by hash and finds it there.
    leaf(ca, "apiserver", Identity("navarch-apiserver"), client=False, server=True, sans=api_sans)
    leaf(ca, "apiserver-agent-client", Identity(APISERVER_USER, (APISERVERS_GROUP,)))
    leaf(ca, "scheduler", Identity(SCHEDULER_USER), server=True, sans=api_sans)
    leaf(ca, "controller-manager", Identity(CONTROLLER_MANAGER_USER), server=True, sans=api_sans)
    leaf(ca, "admin", Identity("admin", (MASTERS_GROUP,)))
    leaf(ca, "monitoring", Identity(MONITORING_USER, (MONITORING_GROUP,)))
    leaf(etcd_ca, "etcd/server", Identity("etcd-server"), server=True, sans=etcd_all)
    leaf(etcd_ca, "etcd/peer", Identity("etcd-peer"), server=True, sans=etcd_all)
    leaf(etcd_ca, "apiserver-etcd-client", Identity("system:apiserver-etcd-client"))
    return pki


def issue_user(
    pki: ClusterPki, user: str, groups: tuple[str, ...], *, validity: float = DEFAULT_VALIDITY
) -> tuple[str, str]:
    """A client certificate for a user, signed by the cluster CA; returns (cert file, key file)."""
    ca = CertificateAuthority.load(pki.ca, pki.ca_key)
    cert, key = ca.issue_pair(Identity(user, groups), validity=validity)
    safe = user.replace(":", "-").replace("/", "-")
    cert_path, key_path = write_pair(pki.root / "users", safe, cert, key)
    return str(cert_path), str(key_path)
