"""The node's certificate: joining with a bootstrap token, keeping the certificate on disk, renewing it.

Join (``--join-token T --ca-cert-hash sha256:... --bootstrap-server HOST:PORT``):

1. Open a TLS connection to the API server's token port without trusting anything yet, and take the CA
   from the certificate chain it sends; it must hash to the pinned ``--ca-cert-hash`` and must have signed
   the server's certificate. From here on the server is verified against that CA.
2. Send a CSR (``CN=system:node:<name>, O=system:nodes``, DNS name = node name, IP = node IP), authenticated
   by the bearer token, and store the signed certificate in ``<data-dir>/pki``.

The certificate is the agent's client certificate and its endpoint's serving certificate. ``CertificateRenewer``
asks for a new one (over mutual TLS, as the node itself) once 70-90 % of its lifetime has passed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
from cryptography import x509

from controlplane import pki, transport
from controlplane.api.errors import ApiError, DeadlineError, UnauthenticatedError, UnavailableError, from_status
from controlplane.api.pb import auth_pb2, auth_pb2_grpc

log = logging.getLogger(__name__)


class JoinError(Exception):
    """The node could not obtain a certificate."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        """The API server could not be reached (try again), as opposed to a refusal (give up)."""


@dataclass(frozen=True)
class JoinConfig:
    """How a new node joins."""

    token: str
    """Bootstrap token ``<id>.<secret>`` (``navarch token create``)."""
    ca_cert_hash: str
    """``sha256:<hex>`` of the cluster CA's public key (``navarch token create`` prints it)."""
    bootstrap_server: str
    """``host:port`` of an API server's token port."""


@dataclass(frozen=True)
class NodeTLSConfig:
    """Where the node's certificate comes from and lives."""

    cert_dir: Path
    """``ca.pem``, ``node.pem`` and ``node-key.pem`` live here."""
    join: JoinConfig | None = None
    """Join with a bootstrap token when there is no certificate yet."""
    ca_file: str | None = None
    """A CA given up front (instead of one pinned by hash)."""
    cert_file: str | None = None
    """A certificate issued up front (``CN=system:node:<name>``); renewed into ``cert_dir``."""
    key_file: str | None = None


def fetch_pinned_ca(address: str, pin: str, timeout: float = 10.0) -> bytes:
    """The CA (PEM) in the chain ``address`` presents, if it matches ``pin`` and signed the server's
    certificate; ``JoinError`` otherwise."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    context = ssl.create_default_context()
    # Nothing is trusted yet: the chain is checked against the pin below, not against system roots.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=host) as tls,
        ):
            chain = [c.public_bytes(ssl._ssl.ENCODING_DER) for c in tls._sslobj.get_unverified_chain()]  # type: ignore[attr-defined]
    except (OSError, ValueError) as err:
        raise JoinError(f"cannot reach the API server at {address} to fetch its CA: {err}", retryable=True) from None
    certs = [x509.load_der_x509_certificate(c) for c in chain]
    if not certs:
        raise JoinError(f"the API server at {address} sent no certificate")
    seen: list[str] = []
    for candidate in certs:
        digest = pki.ca_cert_hash(candidate)
        seen.append(digest)
        if digest != pin:
            continue
        try:
            certs[0].verify_directly_issued_by(candidate)
        except Exception:
            raise JoinError("the pinned CA did not sign the API server's certificate") from None
        return pki.cert_pem(candidate)
    raise JoinError(
        f"no certificate the API server at {address} presents matches --ca-cert-hash {pin} (it sent {', '.join(seen)});"
        " its serving certificate file must carry the CA after the certificate"
    )


async def request_certificate(
    channel: grpc.aio.Channel, node_name: str, node_ip: str, timeout: float = 30.0
) -> tuple[bytes, bytes, bytes]:
    """A new key and its signed node certificate: (key PEM, certificate PEM, CA PEM)."""
    key = pki.new_key()
    sans = pki.Sans([node_name], [node_ip] if node_ip else [])
    csr = pki.make_csr(key, pki.Identity(pki.NODE_USER_PREFIX + node_name, (pki.NODES_GROUP,)), sans)
    try:
        resp = await auth_pb2_grpc.AuthStub(channel).SignNodeCertificate(
            auth_pb2.NodeCertificateRequest(csr_pem=csr), timeout=timeout
        )
    except grpc.aio.AioRpcError as err:
        raise from_status(err.code(), err.details() or err.code().name) from None
    return pki.key_pem(key), resp.certificate_pem, resp.ca_pem


class NodeCredentials:
    """The node's current certificate and key, on disk and in memory."""

    def __init__(self, config: NodeTLSConfig, node_name: str, node_ip: str) -> None:
        self.config = config
        self.node_name = node_name
        self.node_ip = node_ip
        self.ca_pem = b""
        self.cert_pem = b""
        self.key_pem = b""
        self.version = 0
        """Bumped at every renewal (the endpoint's credential fetcher notices)."""

    @property
    def ca_path(self) -> Path:
        return self.config.cert_dir / "ca.pem"

    @property
    def cert_path(self) -> Path:
        return self.config.cert_dir / "node.pem"

    @property
    def key_path(self) -> Path:
        return self.config.cert_dir / "node-key.pem"

    @property
    def certificate(self) -> x509.Certificate:
        """The current certificate."""
        return pki.load_cert(self.cert_pem)

    def channel_tls(self) -> transport.ChannelTLS:
        """TLS towards the API servers with the current certificate."""
        return transport.ChannelTLS(ca_pem=self.ca_pem, cert_pem=self.cert_pem, key_pem=self.key_pem)

    def _store(self, key: bytes, cert: bytes, ca: bytes) -> None:
        pki.write_pem(self.ca_path, ca)
        pki.write_pem(self.key_path, key, secret=True)
        pki.write_pem(self.cert_path, cert)
        self.ca_pem, self.cert_pem, self.key_pem = ca, cert, key
        self.version += 1

    def _load_stored(self) -> bool:
        cfg = self.config
        cert = self.cert_path if self.cert_path.exists() else (Path(cfg.cert_file) if cfg.cert_file else None)
        key = self.key_path if self.key_path.exists() else (Path(cfg.key_file) if cfg.key_file else None)
        ca = self.ca_path if self.ca_path.exists() else (Path(cfg.ca_file) if cfg.ca_file else None)
        if not (cert and key and ca and cert.exists() and key.exists() and ca.exists()):
            return False
        cert_pem, key_pem, ca_pem = cert.read_bytes(), key.read_bytes(), ca.read_bytes()
        loaded = pki.load_cert(cert_pem)
        if pki.identity_of(loaded).user != pki.NODE_USER_PREFIX + self.node_name:
            raise JoinError(f"{cert} is not a certificate of node {self.node_name} ({pki.identity_of(loaded).user})")
        if pki.remaining_fraction(loaded) <= 0.0:
            log.warning("the node certificate in %s has expired; joining again", cert)
            return False
        self.ca_pem, self.cert_pem, self.key_pem = ca_pem, cert_pem, key_pem
        self.version += 1
        return True

    async def ensure(self) -> None:
        """Load the stored certificate, or join with the bootstrap token; ``JoinError`` saying why not."""
        if self._load_stored():
            return
        join = self.config.join
        if join is None:
            raise JoinError(
                f"no valid node certificate in {self.config.cert_dir}: give --join-token and --ca-cert-hash, or "
                "--client-certificate/--client-key"
            )
        delay = 0.5
        while True:  # an API server that is not up yet is waited for, as registration waits for one
            try:
                key, cert, ca = await self._join(join)
                break
            except JoinError as err:
                if not err.retryable:
                    raise
                log.warning("joining: %s; retrying in %.1fs", err, delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 30.0)
        self._store(key, cert, ca)
        log.info("joined: node certificate for %s stored in %s", self.node_name, self.config.cert_dir)

    async def _join(self, join: JoinConfig) -> tuple[bytes, bytes, bytes]:
        ca = await asyncio.to_thread(fetch_pinned_ca, join.bootstrap_server, join.ca_cert_hash)
        tls = transport.ChannelTLS(ca_pem=ca)
        channel = transport.make_channel([join.bootstrap_server], tls, grpc.access_token_call_credentials(join.token))
        try:
            key, cert, ca_pem = await request_certificate(channel, self.node_name, self.node_ip)
        except (UnavailableError, DeadlineError) as err:
            raise JoinError(
                f"cannot reach the API server at {join.bootstrap_server}: {err.message}", retryable=True
            ) from None
        except ApiError as err:
            raise JoinError(f"the API server refused to join node {self.node_name}: {err.message}") from None
        finally:
            await channel.close()
        return key, cert, ca_pem or ca

    def server_credentials(self) -> grpc.ServerCredentials:
        """The endpoint's credentials: the node certificate, and the cluster CA for callers (mutual TLS). A renewed
        certificate is used from the next handshake on."""
        served = [self.version]

        def config() -> grpc.ServerCertificateConfiguration:
            return grpc.ssl_server_certificate_configuration([(self.key_pem, self.cert_pem)], self.ca_pem)

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            if served[0] == self.version:
                return None
            served[0] = self.version
            return config()

        return grpc.dynamic_ssl_server_credentials(config(), fetch, require_client_authentication=True)

    async def renew(self, channel: grpc.aio.Channel) -> None:
        """Ask for a new certificate as this node and store it."""
        key, cert, ca = await request_certificate(channel, self.node_name, self.node_ip)
        self._store(key, cert, ca or self.ca_pem)
        log.info("node certificate renewed; valid until %s", self.certificate.not_valid_after_utc.isoformat())


class CertificateRenewer:
    """Renews the node certificate once 70-90 % of its lifetime has passed (jittered, as the kubelet does), with
    back-off on failure; every renewal reconnects the client."""

    def __init__(
        self,
        credentials: NodeCredentials,
        channel: Callable[[], grpc.aio.Channel],
        reconnect: Callable[[transport.ChannelTLS], Awaitable[None]],
    ) -> None:
        self.credentials = credentials
        self.channel = channel
        self.reconnect = reconnect

    def _delay(self) -> float:
        cert = self.credentials.certificate
        total = pki.lifetime(cert)
        left = total * pki.remaining_fraction(cert)
        return max(0.0, left - total * random.uniform(0.1, 0.3))

    async def run(self) -> None:
        """Renew forever (cancel to stop)."""
        backoff = 1.0
        while True:
            await asyncio.sleep(self._delay())
            try:
                await self.credentials.renew(self.channel())
            except (ApiError, grpc.aio.AioRpcError, OSError) as err:
                text = err.message if isinstance(err, ApiError) else str(err)
                if isinstance(err, UnauthenticatedError):
                    text += " (the certificate may have expired: delete it and join again)"
                log.warning("node certificate renewal failed: %s; retrying in %.0fs", text, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            backoff = 1.0
            await self.reconnect(self.credentials.channel_tls())
