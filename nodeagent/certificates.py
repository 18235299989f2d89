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
import os
import random
import shutil
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio

from controlplane import certinfo, transport
from controlplane.api.errors import ApiError, DeadlineError, UnauthenticatedError, UnavailableError, from_status
from controlplane.api.pb import auth_pb2, auth_pb2_grpc
from controlplane.certinfo import NODE_USER_PREFIX, CertInfo

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
    from cryptography import x509  # joining only: an agent that has its certificate never loads OpenSSL's bindings

    from controlplane import pki

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
    from controlplane import pki  # joining and renewing only (cryptography costs ~9 MiB for the process's life)

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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _serial(path: Path) -> int:
    suffix = path.name.rpartition("-")[2]
    return int(suffix) if suffix.isdigit() else 0


def _replace_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` in one rename (whatever was at ``link`` before)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


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

    # The three files of one certificate live in their own directory, ``credentials-<n>/``; the symlink
    # ``current`` names the one in use and is replaced in one rename, so a crash (or a reader) at any moment
    # sees the old set or the new one, never a new key beside an old certificate. ``ca.pem``, ``node.pem``
    # and ``node-key.pem`` in the certificate directory are symlinks through ``current`` (for operators).
    _FILES = ("ca.pem", "node.pem", "node-key.pem")

    @property
    def _current(self) -> Path:
        return self.config.cert_dir / "current"

    @property
    def ca_path(self) -> Path:
        return self._current / "ca.pem" if self._current.exists() else self.config.cert_dir / "ca.pem"

    @property
    def cert_path(self) -> Path:
        return self._current / "node.pem" if self._current.exists() else self.config.cert_dir / "node.pem"

    @property
    def key_path(self) -> Path:
        return self._current / "node-key.pem" if self._current.exists() else self.config.cert_dir / "node-key.pem"

    @property
    def certificate(self) -> CertInfo:
        """The current certificate's subject and validity."""
        return certinfo.read_pem(self.cert_pem)

    def channel_tls(self) -> transport.ChannelTLS:
        """TLS towards the API servers with the current certificate."""
        return transport.ChannelTLS(ca_pem=self.ca_pem, cert_pem=self.cert_pem, key_pem=self.key_pem)

    def _store(self, key: bytes, cert: bytes, ca: bytes) -> None:
        """Write a certificate, its key and the CA as one set, switched to in a single rename."""
        base = self.config.cert_dir
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        fresh = base / f"credentials-{time.time_ns()}"
        fresh.mkdir(mode=0o700)
        for name, data, secret in (("ca.pem", ca, False), ("node.pem", cert, False), ("node-key.pem", key, True)):
            fd = os.open(fresh / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        _fsync_dir(fresh)
        _replace_symlink(base / "current", fresh.name)
        _fsync_dir(base)
        for name in self._FILES:  # operators' paths, through ``current`` (regular files from before are replaced)
            link = base / name
            if not (link.is_symlink() and os.readlink(link) == f"current/{name}"):
                _replace_symlink(link, f"current/{name}")
        # Keep the previous set too: a reader that resolved ``current`` a moment ago still finds its files.
        sets = sorted((d for d in base.glob("credentials-*") if d.is_dir() and not d.is_symlink()), key=_serial)
        for old in sets[:-2]:
            shutil.rmtree(old, ignore_errors=True)
        self.ca_pem, self.cert_pem, self.key_pem = ca, cert, key
        self.version += 1

    def read_stored(self) -> tuple[bytes, bytes, bytes] | None:
        """(certificate, key, CA) PEM of the stored set (or of the configured files), or None. ``current`` is
        resolved once, so the three always belong together."""
        cfg = self.config
        if self._current.is_symlink():
            stored = self.config.cert_dir / os.readlink(self._current)
            try:
                return (
                    (stored / "node.pem").read_bytes(),
                    (stored / "node-key.pem").read_bytes(),
                    (stored / "ca.pem").read_bytes(),
                )
            except FileNotFoundError:
                return None

        def pick(name: str, configured: str | None) -> Path | None:
            own = cfg.cert_dir / name
            return own if own.exists() else (Path(configured) if configured else None)

        cert, key, ca = pick("node.pem", cfg.cert_file), pick("node-key.pem", cfg.key_file), pick("ca.pem", cfg.ca_file)
        if not (cert and key and ca and cert.exists() and key.exists() and ca.exists()):
            return None
        return cert.read_bytes(), key.read_bytes(), ca.read_bytes()

    def _load_stored(self) -> bool:
        found = self.read_stored()
        if found is None:
            return False
        cert_pem, key_pem, ca_pem = found
        cert = self.cert_path
        try:
            loaded = certinfo.read_pem(cert_pem)
        except certinfo.CertificateError as err:
            raise JoinError(f"{cert}: {err}") from None
        if loaded.user != NODE_USER_PREFIX + self.node_name:
            raise JoinError(f"{cert} is not a certificate of node {self.node_name} ({loaded.user})")
        if loaded.remaining_fraction() <= 0.0:
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
        log.info("node certificate renewed; valid until %s", self.certificate.not_after.isoformat())


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
        total = cert.lifetime()
        left = total * cert.remaining_fraction()
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
