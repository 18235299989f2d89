"""A secure cluster for the security tests: certificates from ``init_cluster_pki`` (what ``navarch pki init``
runs), etcd requiring client certificates, an API server with mutual TLS, a token port, static tokens, node
certificate signing, Secrets encrypted at rest and a RequestResponse audit log."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane import pki, transport
from controlplane.apiserver.audit import AuditConfig
from controlplane.apiserver.guard import Limits
from controlplane.apiserver.main import ApiServer, ApiServerConfig, SecurityConfig
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.clusterpki import ClusterPki, init_cluster_pki, issue_user
from controlplane.launcher.etcd import EtcdCluster, EtcdTLS
from controlplane.storage import EtcdConfig

STATIC_TOKEN = "static-token-for-ops-0123456789"
HAMMER_TOKEN = "static-token-for-hammer-0123456"
RATE = 20.0
BURST = 40


@dataclass
class SecureCluster:
    """Paths and addresses of the secure test cluster."""

    pki: ClusterPki
    etcd: EtcdCluster
    server: ApiServer
    audit_path: Path
    encryption_path: Path
    key1: str

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def token_endpoint(self) -> str:
        return f"127.0.0.1:{self.server.token_port}"

    def etcd_config(self) -> EtcdConfig:
        return EtcdConfig(
            endpoints=self.etcd.endpoints,
            ca_file=self.pki.etcd_ca,
            cert_file=self.pki.cert("apiserver-etcd-client"),
            key_file=self.pki.key("apiserver-etcd-client"),
        )

    def client_as(self, cert: str, key: str, **kwargs: object) -> ApiClient:
        """A client authenticated by a certificate."""
        tls = transport.ChannelTLS(self.pki.ca, cert, key)
        return ApiClient(ClientConfig(endpoints=[self.endpoint], tls=tls, timeout=10, **kwargs))  # type: ignore[arg-type]

    def user(self, name: str, *groups: str) -> ApiClient:
        """A client for a user with a fresh certificate."""
        cert, key = issue_user(self.pki, name, tuple(groups))
        return self.client_as(cert, key)

    def admin(self) -> ApiClient:
        return self.client_as(self.pki.cert("admin"), self.pki.key("admin"))

    def token_client(self, token: str) -> ApiClient:
        """A client on the token port authenticated by a bearer token."""
        tls = transport.ChannelTLS(self.pki.ca)
        return ApiClient(ClientConfig(endpoints=[self.token_endpoint], tls=tls, token=token, timeout=10))


def write_encryption_config(path: Path, *keys: tuple[str, str]) -> None:
    """An EncryptionConfiguration for secrets with these (name, base64 secret) keys, then identity."""
    lines = [
        "kind: EncryptionConfiguration",
        "apiVersion: apiserver.config.k8s.io/v1",
        "resources:",
        "  - resources: [secrets]",
        "    providers:",
        "      - aesgcm:",
        "          keys:",
    ]
    lines += [f"            - {{name: {name}, secret: {secret}}}" for name, secret in keys]
    lines.append("      - identity: {}")
    path.write_text("\n".join(lines) + "\n")


def etcd_client_config(cluster_pki: ClusterPki, etcd: EtcdCluster) -> EtcdConfig:
    """How an API server reaches the secured test etcd (mutual TLS with its etcd client certificate)."""
    return EtcdConfig(
        endpoints=etcd.endpoints,
        ca_file=cluster_pki.etcd_ca,
        cert_file=cluster_pki.cert("apiserver-etcd-client"),
        key_file=cluster_pki.key("apiserver-etcd-client"),
    )


@pytest.fixture(scope="module")
def cluster_pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPki:
    return init_cluster_pki(tmp_path_factory.mktemp("pki"), validity=3600)


@pytest.fixture(scope="module")
def secure_etcd(cluster_pki: ClusterPki) -> Iterator[EtcdCluster]:
    tls = EtcdTLS(
        ca_file=cluster_pki.etcd_ca,
        cert_file=cluster_pki.cert("etcd/server"),
        key_file=cluster_pki.key("etcd/server"),
        client_cert_auth=True,
        client_cert_file=cluster_pki.cert("apiserver-etcd-client"),
        client_key_file=cluster_pki.key("apiserver-etcd-client"),
    )
    with EtcdCluster(1, tls=tls) as etcd:
        yield etcd


@pytest.fixture(scope="module")
async def secure(
    cluster_pki: ClusterPki, secure_etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SecureCluster]:
    work = tmp_path_factory.mktemp("secure")
    tokens = work / "tokens.csv"
    tokens.write_text(f'{STATIC_TOKEN},ops,1001,"ops-team"\n{HAMMER_TOKEN},hammer,1002\n')
    key1 = base64.b64encode(os.urandom(32)).decode()
    encryption = work / "encryption.yaml"
    write_encryption_config(encryption, ("key1", key1))
    audit = work / "audit.log"
    config = ApiServerConfig(
        etcd=etcd_client_config(cluster_pki, secure_etcd),
        listen="127.0.0.1:0",
        progress_interval=0.5,
        metrics_listen="127.0.0.1:0",
        security=SecurityConfig(
            tls=transport.ServerTLS(cluster_pki.cert("apiserver"), cluster_pki.key("apiserver"), cluster_pki.ca),
            token_listen="127.0.0.1:0",
            token_file=str(tokens),
            signing_cert_file=cluster_pki.ca,
            signing_key_file=cluster_pki.ca_key,
            node_cert_validity=3600,
            agent_tls=transport.ChannelTLS(
                cluster_pki.ca, cluster_pki.cert("apiserver-agent-client"), cluster_pki.key("apiserver-agent-client")
            ),
            encryption_config=str(encryption),
            audit=AuditConfig(str(audit), "RequestResponse"),
            limits=Limits(rate=RATE, burst=BURST),
        ),
    )
    server = ApiServer(config)
    await server.start()
    try:
        yield SecureCluster(cluster_pki, secure_etcd, server, audit, encryption, key1)
    finally:
        await server.stop()


def identity(cert_pem: bytes) -> pki.Identity:
    return pki.identity_of(pki.load_cert(cert_pem))
