"""``navarch-apiserver``: flags, start-up checks, and the serving loop."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import click
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from controlplane import pki, transport
from controlplane.api import kinds
from controlplane.api.durations import parse_duration
from controlplane.api.errors import ApiError, UnavailableError
from controlplane.api.pb import api_pb2, auth_pb2, auth_pb2_grpc, core_pb2
from controlplane.apiserver import metrics
from controlplane.apiserver.admission import AdmissionChain, PriorityAdmission
from controlplane.apiserver.allocator import ServiceRanges, parse_service_ranges
from controlplane.apiserver.audit import AuditConfig, AuditLog
from controlplane.apiserver.authn import (
    AUTHENTICATED_GROUP,
    BOOTSTRAP_NAMESPACE,
    Authenticator,
    UserInfo,
    load_token_file,
)
from controlplane.apiserver.authservice import AuthService, NodeCertificateSigner
from controlplane.apiserver.authz import Attributes, AuthorizerChain
from controlplane.apiserver.escalation import EscalationCheck
from controlplane.apiserver.flags import ApiServerFlags
from controlplane.apiserver.guard import Limits, RequestGuard
from controlplane.apiserver.inflight import StreamLimits
from controlplane.apiserver.nodeauthz import NodeAuthorizer
from controlplane.apiserver.podproxy import PodProxy
from controlplane.apiserver.rbac import RBACAuthorizer
from controlplane.apiserver.registry import Registry
from controlplane.apiserver.service import ApiService
from controlplane.apiserver.service import add_to_server as add_api_to_server
from controlplane.apiserver.strategy import StrategyOptions
from controlplane.apiserver.watchcache import WatchCache
from controlplane.client.component import setup_logging, until_signal
from controlplane.client.metricsendpoint import Caller, EndpointSecurity, MetricsEndpoint
from controlplane.client.options import click_options, from_params
from controlplane.storage import EtcdClient, EtcdConfig, Store
from controlplane.storage.compactor import DEFAULT_INTERVAL as DEFAULT_COMPACTION_INTERVAL
from controlplane.storage.compactor import Compactor
from controlplane.storage.encryption import EncryptionConfig, EncryptionError
from controlplane.storage.keys import object_key

log = logging.getLogger("navarch.apiserver")

API_SERVICE = api_pb2.DESCRIPTOR.services_by_name["Api"].full_name
AUTH_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["Auth"].full_name
ETCD_HEALTH = "etcd"
"""Health-service name whose status is etcd's health as this API server sees it."""


@dataclass(frozen=True)
class SecurityConfig:
    """TLS, authentication, authorization, encryption at rest, audit and limits."""

    tls: transport.ServerTLS | None = None
    """Serving certificate and client CA. None: plain text on loopback only, every caller a superuser
    (``navarch up`` and tests)."""
    token_listen: str | None = None
    """A second TLS address that asks for no client certificate: bearer tokens (and joining agents) use it."""
    token_file: str | None = None
    """Static bearer tokens (``token,user,uid,"group1,group2"`` lines)."""
    signing_cert_file: str | None = None
    """The cluster CA that signs node certificates."""
    signing_key_file: str | None = None
    node_cert_validity: float = pki.DEFAULT_VALIDITY
    """Lifetime of the node certificates this server signs."""
    agent_tls: transport.ChannelTLS | None = None
    """How to reach agents for logs and exec: their CA and this server's client certificate."""
    encryption_config: str | None = None
    """EncryptionConfiguration file (Secrets encrypted at rest)."""
    audit: AuditConfig | None = None
    """Where the audit log goes (None: no audit log)."""
    limits: Limits = field(default_factory=Limits)
    """Per-user rate limit and the longest a call may run."""


@dataclass(frozen=True)
class ApiServerConfig:
    """Everything the API server is started with."""

    etcd: EtcdConfig = field(default_factory=EtcdConfig)
    """How to reach etcd."""
    listen: str = "127.0.0.1:6443"
    """``host:port`` to serve on (port 0 picks a free one)."""
    watch_cache_window: int = 10_000
    """Events of history kept per kind for watches that resume from a resourceVersion."""
    watch_cache_window_bytes: int = 100 * 1024 * 1024
    """Bytes of object history kept per kind (the window ends at whichever bound comes first)."""
    watcher_queue: int = 1_000
    """Events a watcher may fall behind before it is closed with RESOURCE_EXHAUSTED."""
    bookmark_interval: float = 60.0
    """Seconds of silence after which a watcher that allows bookmarks receives one."""
    progress_interval: float = 5.0
    """Seconds between etcd progress requests that keep each cache's revision fresh."""
    startup_timeout: float = 10.0
    """How long to wait for etcd at start before giving up."""
    etcd_health_interval: float = 5.0
    """Seconds between etcd health checks (reported as the ``etcd`` health service)."""
    default_not_ready_toleration_seconds: int = 30
    """How long a pod without its own toleration stays on a node reporting Ready=False."""
    default_unreachable_toleration_seconds: int = 30
    """How long a pod without its own toleration stays on a node whose agent went silent."""
    service_ranges: ServiceRanges = field(default_factory=ServiceRanges)
    """Where Services' cluster IPs and node ports come from."""
    security: SecurityConfig = field(default_factory=SecurityConfig)
    """TLS, authentication, authorization, encryption at rest, audit."""
    event_ttl_seconds: int = 3600
    """How long Events live after their last write (an etcd lease deletes them)."""
    compaction_interval: float = DEFAULT_COMPACTION_INTERVAL
    """Seconds between etcd compactions (keeping one interval of history); 0 leaves compaction to others."""
    metrics_listen: str = ""
    """``host:port`` of /metrics, /healthz, /readyz (HTTPS with TLS; loopback plain HTTP when insecure); "": none."""


class ApiServer:
    """A running API server: etcd connection, watch caches, gRPC server. Owns all its tasks."""

    def __init__(self, config: ApiServerConfig) -> None:
        self.config = config
        sec = config.security
        self.etcd = EtcdClient(config.etcd)
        self.store = Store(self.etcd, EncryptionConfig.load(sec.encryption_config) if sec.encryption_config else None)
        self.caches = {
            info.kind: WatchCache(
                self.store,
                info,
                window=config.watch_cache_window,
                window_bytes=config.watch_cache_window_bytes,
                watcher_capacity=config.watcher_queue,
                progress_interval=config.progress_interval,
            )
            for info in kinds.KINDS
        }
        rbac = RBACAuthorizer(self.caches)
        self.authorizer = AuthorizerChain([NodeAuthorizer(self.caches, self._fetch_pod), rbac])
        self.registry = Registry(
            self.store,
            self.caches,
            not_ready_toleration_seconds=config.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds=config.default_unreachable_toleration_seconds,
            service_ranges=config.service_ranges,
            admit=AdmissionChain(
                EscalationCheck(self.authorizer, rbac.rules_of),
                PriorityAdmission(self.caches, self._fetch_priority_class),
            ),
            strategy_options=StrategyOptions(event_ttl_seconds=config.event_ttl_seconds),
        )
        self.compactor = Compactor(self.etcd, config.compaction_interval)
        self.proxy = PodProxy(self.registry, sec.agent_tls)
        secret_info = kinds.lookup("Secret")
        self.authenticator = Authenticator(
            insecure=sec.tls is None,
            client_cas=pki.load_certs(Path(sec.tls.client_ca_file).read_bytes())
            if sec.tls and sec.tls.client_ca_file
            else (),
            tokens=load_token_file(sec.token_file) if sec.token_file else None,
            bootstrap_secret=lambda name: self.caches["Secret"].get(  # type: ignore[arg-type, return-value]
                object_key(secret_info, BOOTSTRAP_NAMESPACE, name)
            ),
        )
        self.audit = AuditLog(sec.audit) if sec.audit else None
        self.guard = RequestGuard(self.authenticator, self.authorizer, limits=sec.limits, audit=self.audit)
        signer = None
        if sec.signing_cert_file and sec.signing_key_file:
            signer = NodeCertificateSigner(
                pki.CertificateAuthority.load(sec.signing_cert_file, sec.signing_key_file),
                sec.node_cert_validity,
                self._node_addresses,
            )
        self.auth_service = AuthService(self.authorizer, signer)
        self.server = transport.make_server([self.guard])
        self.port = 0
        self.token_port = 0
        self._tasks: asyncio.TaskGroup | None = None
        self._cache_tasks: list[asyncio.Task[None]] = []
        self.health = health.aio.HealthServicer()
        self._cache_metrics = metrics.CACHES.track(self.caches)
        self.metrics_endpoint: MetricsEndpoint | None = None
        if config.metrics_listen:
            self.metrics_endpoint = MetricsEndpoint(
                config.metrics_listen, security=self._metrics_security(), ready=self._ready
            )

    def _metrics_security(self) -> EndpointSecurity | None:
        tls = self.config.security.tls
        if tls is None:
            return None

        async def authorize(caller: Caller, path: str) -> bool:
            user = UserInfo(caller.user, (*caller.groups, AUTHENTICATED_GROUP), "x509")
            allowed, _ = await self.authorizer.decide(Attributes(user, "get", "", path=path))
            return allowed

        def token_user(token: str) -> Caller | None:
            try:
                user = self.authenticator.from_header(f"Bearer {token}")
            except ApiError:
                return None
            return Caller(user.name, user.groups)

        return EndpointSecurity(tls.cert_file, tls.key_file, tls.client_ca_file, authorize, token_user)

    def _ready(self) -> tuple[bool, str]:
        if not all(cache.ready.is_set() for cache in self.caches.values()):
            return False, "watch caches are filling"
        if self.etcd.unhealthy is not None:
            return False, f"etcd: {self.etcd.unhealthy}"
        return True, "ok"

    async def start(self) -> None:
        """Connect to etcd (fail fast if unreachable), fill the caches, and start serving."""
        await self.etcd.connect()
        try:
            await self.etcd.ping(timeout=self.config.startup_timeout)
        except UnavailableError as err:
            await self.etcd.close()
            raise UnavailableError(
                f"cannot reach etcd at {','.join(self.config.etcd.endpoints)}: {err.message}"
            ) from err
        for info in kinds.KINDS:
            cache = self.caches[info.kind]
            self._cache_tasks.append(asyncio.create_task(cache.run(), name=f"watch-cache-{info.plural}"))
        for cache in self.caches.values():
            await asyncio.wait_for(cache.ready.wait(), self.config.startup_timeout)
        await self.registry.ensure_namespaces()
        await self.registry.ensure_bootstrap_policy()
        await self.registry.ensure_priority_classes()
        add_api_to_server(
            ApiService(self.registry, self.proxy, bookmark_interval=self.config.bookmark_interval), self.server
        )
        auth_pb2_grpc.add_AuthServicer_to_server(self.auth_service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (
                API_SERVICE,
                AUTH_SERVICE,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self.server,
        )
        tls = self.config.security.tls
        self.port = transport.add_port(self.server, self.config.listen, tls.credentials() if tls else None)
        if tls and self.config.security.token_listen:
            self.token_port = transport.add_port(
                self.server, self.config.security.token_listen, tls.credentials(require_client_cert=False)
            )
        await self.server.start()
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.start()
            log.info(
                "metrics on %s://%s (port %d)",
                self.metrics_endpoint.scheme,
                self.config.metrics_listen,
                self.metrics_endpoint.port,
            )
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(API_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(ETCD_HEALTH, health_pb2.HealthCheckResponse.SERVING)
        self._cache_tasks.append(asyncio.create_task(self._watch_etcd_health(), name="etcd-health"))
        if self.config.compaction_interval > 0:
            self._cache_tasks.append(asyncio.create_task(self.compactor.run(), name="etcd-compactor"))
        log.info(
            "serving on %s (port %d), etcd %s", self.config.listen, self.port, ",".join(self.config.etcd.endpoints)
        )

    def _node_addresses(self, name: str) -> list[str] | None:
        """The IP addresses a registered Node reports (None: no such Node), for node certificate requests."""
        node = self.caches["Node"].get(object_key(kinds.lookup("Node"), "", name))
        if not isinstance(node, core_pb2.Node):
            return None
        return [a.address for a in node.status.addresses if a.type in ("InternalIP", "ExternalIP")]

    async def _fetch_priority_class(self, name: str) -> Message:
        return await self.registry.get(kinds.lookup("PriorityClass"), "", name)

    async def _fetch_pod(self, namespace: str, name: str) -> Message:
        return await self.registry.get(kinds.lookup("Pod"), namespace, name)

    async def _watch_etcd_health(self) -> None:
        serving = health_pb2.HealthCheckResponse.SERVING
        while True:
            await asyncio.sleep(self.config.etcd_health_interval)
            try:
                await self.etcd.ping(timeout=min(3.0, self.config.etcd_health_interval))
                status = serving
                if self.etcd.unhealthy is not None:
                    log.info("etcd answers again")
                self.etcd.unhealthy = None
            except UnavailableError as err:
                log.warning("etcd health check failed: %s", err.message)
                status = health_pb2.HealthCheckResponse.NOT_SERVING
                self.etcd.unhealthy = err.message
            await self.health.set(ETCD_HEALTH, status)

    async def stop(self, grace: float = 2.0) -> None:
        """Stop serving, cancel every background task, close etcd."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.stop()
        await self.proxy.close()
        if self.audit is not None:
            self.audit.close()
        for task in self._cache_tasks:
            task.cancel()
        await asyncio.gather(*self._cache_tasks, return_exceptions=True)
        self._cache_tasks.clear()
        await self.etcd.close()


async def serve(config: ApiServerConfig) -> None:
    """Run until SIGINT/SIGTERM."""
    server = ApiServer(config)
    await server.start()
    try:
        await until_signal()
    finally:
        await server.stop()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click_options(ApiServerFlags)
def main(**params: Any) -> None:
    """Serve the Navarch API, backed by etcd."""
    f = from_params(ApiServerFlags, params)
    setup_logging(f.verbose)

    def refuse(message: str) -> NoReturn:
        click.echo(f"navarch-apiserver: {message}", err=True)
        sys.exit(2)

    if bool(f.tls_cert_file) != bool(f.tls_private_key_file):
        refuse("--tls-cert-file and --tls-private-key-file go together")
    if not f.tls_cert_file and not f.insecure:
        refuse("give --tls-cert-file/--tls-private-key-file (and --client-ca-file), or --insecure on loopback")
    if f.tls_cert_file and f.insecure:
        refuse("--insecure and --tls-cert-file exclude each other")
    if f.insecure and not transport.is_loopback(f.listen):
        refuse(f"refusing to serve plain text on non-loopback address {f.listen}; configure TLS")
    if f.token_listen and not f.tls_cert_file:
        refuse("--token-listen needs TLS (--tls-cert-file)")
    if bool(f.cluster_signing_cert_file) != bool(f.cluster_signing_key_file):
        refuse("--cluster-signing-cert-file and --cluster-signing-key-file go together")
    if bool(f.agent_client_certificate) != bool(f.agent_client_key):
        refuse("--agent-client-certificate and --agent-client-key go together")
    try:
        validity = parse_duration(f.node_cert_validity)
        timeout = parse_duration(f.request_timeout)
        event_ttl_seconds = parse_duration(f.event_ttl)
        compaction_interval = parse_duration(f.etcd_compaction_interval)
    except ValueError as err:
        refuse(str(err))
    if event_ttl_seconds < 1:
        refuse(f"--event-ttl {f.event_ttl}: must be at least 1s")
    if compaction_interval < 0:
        refuse(f"--etcd-compaction-interval {f.etcd_compaction_interval}: must not be negative")
    tls = None
    if f.tls_cert_file and f.tls_private_key_file:
        tls = transport.ServerTLS(f.tls_cert_file, f.tls_private_key_file, f.client_ca_file)
    agent_ca = f.agent_certificate_authority or f.client_ca_file
    agent_tls = None
    if tls is not None:
        if not (f.agent_client_certificate and agent_ca):
            refuse("with TLS, agents are reached with --agent-client-certificate/--agent-client-key (and their CA)")
        agent_tls = transport.ChannelTLS(agent_ca, f.agent_client_certificate, f.agent_client_key)
    audit = None
    if f.audit_log_path:
        audit = AuditConfig(f.audit_log_path, f.audit_level, f.audit_log_maxsize * 1024 * 1024, f.audit_log_maxbackup)
    security = SecurityConfig(
        tls=tls,
        token_listen=f.token_listen,
        token_file=f.token_auth_file,
        signing_cert_file=f.cluster_signing_cert_file,
        signing_key_file=f.cluster_signing_key_file,
        node_cert_validity=validity,
        agent_tls=agent_tls,
        encryption_config=f.encryption_provider_config,
        audit=audit,
        limits=Limits(
            f.max_requests_per_user,
            f.max_requests_burst,
            timeout,
            StreamLimits(
                f.max_watches_per_user,
                f.max_watches,
                f.max_log_streams_per_user,
                f.max_exec_sessions_per_user,
                f.max_port_forwards_per_user,
            ),
        ),
    )
    if bool(f.etcd_certfile) != bool(f.etcd_keyfile) or (f.etcd_certfile and not f.etcd_cafile):
        refuse("--etcd-certfile and --etcd-keyfile go together, with --etcd-cafile")
    if f.etcd_servers.tls and not f.etcd_cafile:
        refuse("--etcd-servers: https:// members need --etcd-cafile (the CA of etcd's certificates)")
    if f.etcd_servers.tls is False and f.etcd_cafile:
        refuse("--etcd-servers: http:// members are plain text, but --etcd-cafile asks for TLS; use https://")
    try:
        ranges = parse_service_ranges(f.service_cluster_ip_range, f.service_node_port_range)
    except ValueError as err:
        refuse(str(err))
    endpoints = f.etcd_servers.endpoints
    config = ApiServerConfig(
        etcd=EtcdConfig(
            endpoints=endpoints,
            ca_file=f.etcd_cafile,
            cert_file=f.etcd_certfile,
            key_file=f.etcd_keyfile,
            tls_server_name=f.etcd_server_name,
        ),
        listen=f.listen,
        watch_cache_window=f.watch_cache_window,
        watch_cache_window_bytes=f.watch_cache_window_mib * 1024 * 1024,
        startup_timeout=f.etcd_startup_timeout,
        default_not_ready_toleration_seconds=f.default_not_ready_toleration_seconds,
        default_unreachable_toleration_seconds=f.default_unreachable_toleration_seconds,
        service_ranges=ranges,
        security=security,
        event_ttl_seconds=int(event_ttl_seconds),
        compaction_interval=compaction_interval,
        metrics_listen=f.metrics_listen,
    )
    if f.insecure and f.metrics_listen and not transport.is_loopback(f.metrics_listen):
        refuse(f"--metrics-listen {f.metrics_listen}: plain HTTP only on loopback; configure TLS")
    try:
        asyncio.run(serve(config))
    except UnavailableError as err:
        click.echo(f"navarch-apiserver: {err.message}", err=True)
        sys.exit(1)
    except (OSError, ValueError, EncryptionError, pki.CertificateError) as err:
        click.echo(f"navarch-apiserver: {err}", err=True)
        sys.exit(1)
