"""``navarch-apiserver``'s flags, each written once (``controlplane.client.options``)."""

from __future__ import annotations

from dataclasses import dataclass

import click

from controlplane import addresses
from controlplane.apiserver.audit import LEVELS
from controlplane.apiserver.inflight import StreamLimits
from controlplane.client.component import metrics_listen_flag, verbose_flag
from controlplane.client.options import flag

_FILE = click.Path(exists=True, dir_okay=False)


@dataclass(frozen=True)
class ApiServerFlags:
    """Everything the command line says; ``main`` turns it into an ``ApiServerConfig``."""

    etcd_servers: addresses.EtcdEndpoints = flag(
        default="127.0.0.1:2379",
        callback=addresses.etcd_servers_option_callback,
        help="Comma list of etcd members: http://host:port, https://host:port (needs --etcd-cafile) or host:port.",
    )
    listen: str = flag(
        default="127.0.0.1:6443", callback=addresses.listen_option_callback, help="Address to serve the API on."
    )
    watch_cache_window: int = flag(
        default=10_000, type=click.IntRange(min=10), help="Events of history kept per kind for watch resumption."
    )
    watch_cache_window_mib: int = flag(
        default=100,
        type=click.IntRange(min=1),
        help="MiB of object history kept per kind for watch resumption (whichever bound comes first).",
    )
    etcd_cafile: str | None = flag(type=_FILE, help="CA for etcd's certificates.")
    etcd_certfile: str | None = flag(type=_FILE, help="Client certificate for etcd.")
    etcd_keyfile: str | None = flag(type=_FILE, help="Key of the client certificate.")
    etcd_server_name: str | None = flag(help="Name to verify in etcd's certificates (default localhost).")
    insecure: bool = flag(
        default=False,
        is_flag=True,
        help="Serve plain text without authentication, every caller an administrator (loopback only: navarch up, "
        "tests).",
    )
    tls_cert_file: str | None = flag(type=_FILE, help="Serving certificate (PEM).")
    tls_private_key_file: str | None = flag(type=_FILE, help="Its key.")
    client_ca_file: str | None = flag(
        type=_FILE, help="CA of client certificates; --listen then requires one (mutual TLS)."
    )
    token_listen: str | None = flag(
        callback=addresses.listen_option_callback,
        help="Second TLS address without client certificates, for bearer tokens and joining agents (e.g. :6444).",
    )
    token_auth_file: str | None = flag(type=_FILE, help="Static bearer tokens (CSV).")
    cluster_signing_cert_file: str | None = flag(type=_FILE, help="CA signing node certs.")
    cluster_signing_key_file: str | None = flag(type=_FILE, help="Its key.")
    node_cert_validity: str = flag(default="8760h", help="Lifetime of signed node certificates.")
    agent_client_certificate: str | None = flag(
        type=_FILE, help="This server's certificate towards agents (CN system:apiserver)."
    )
    agent_client_key: str | None = flag(type=_FILE, help="Its key.")
    agent_certificate_authority: str | None = flag(
        type=_FILE, help="CA of the agents' certificates (default: --client-ca-file)."
    )
    encryption_provider_config: str | None = flag(
        type=_FILE, help="EncryptionConfiguration: which resources are encrypted at rest, with which keys."
    )
    audit_log_path: str | None = flag(help="Audit log file (JSON lines; '-' for stdout).")
    audit_level: str = flag(default="Metadata", type=click.Choice(LEVELS))
    audit_log_maxsize: int = flag(default=100, type=click.IntRange(min=1), help="MiB per file.")
    audit_log_maxbackup: int = flag(default=10, type=click.IntRange(min=0))
    max_requests_per_user: float = flag(
        default=200.0,
        type=click.FloatRange(min=0),
        help="Requests per second per user before RESOURCE_EXHAUSTED (0: no limit; system:masters exempt).",
    )
    max_requests_burst: int = flag(default=400, type=click.IntRange(min=1))
    max_watches_per_user: int = flag(
        default=StreamLimits.watches_per_user,
        type=click.IntRange(min=0),
        help="Concurrent watches one user may hold (0: no limit; system:masters exempt).",
    )
    max_watches: int = flag(
        default=StreamLimits.watches,
        type=click.IntRange(min=0),
        help="Concurrent watches this server serves in all (0: no limit).",
    )
    max_log_streams_per_user: int = flag(
        default=StreamLimits.log_streams_per_user,
        type=click.IntRange(min=0),
        help="Concurrent pod log streams per user (0: no limit; system:masters exempt).",
    )
    max_exec_sessions_per_user: int = flag(
        default=StreamLimits.exec_sessions_per_user,
        type=click.IntRange(min=0),
        help="Concurrent exec sessions per user (0: no limit; system:masters exempt).",
    )
    max_port_forwards_per_user: int = flag(
        default=StreamLimits.port_forwards_per_user,
        type=click.IntRange(min=0),
        help="Concurrent port-forward connections per user (0: no limit; system:masters exempt).",
    )
    request_timeout: str = flag(default="60s", help="The longest a unary call may run, whatever its deadline.")
    etcd_startup_timeout: float = flag(
        default=10.0, type=click.FloatRange(min=0.1), help="Seconds to wait for etcd at start before exiting."
    )
    default_not_ready_toleration_seconds: int = flag(
        default=30,
        type=click.IntRange(min=0),
        help="Toleration of node.navarch.io/not-ready:NoExecute added to pods without one.",
    )
    default_unreachable_toleration_seconds: int = flag(
        default=30,
        type=click.IntRange(min=0),
        help="Toleration of node.navarch.io/unreachable:NoExecute added to pods without one.",
    )
    service_cluster_ip_range: str = flag(
        default="127.77.0.0/16",
        help="CIDR (inside 127.0.0.0/8, so agents need no network set-up) for Services' cluster IPs.",
    )
    service_node_port_range: str = flag(default="30000-32767", help="Ports for NodePort Services.")
    event_ttl: str = flag(
        default="1h", help="How long an Event lives after its last write; etcd deletes it on its own (a lease)."
    )
    etcd_compaction_interval: str = flag(
        default="5m",
        help="How often this server compacts etcd, keeping one interval of history (0: never; several API "
        "servers coordinate through etcd, so only one compacts per interval).",
    )
    metrics_listen: str = metrics_listen_flag()
    verbose: bool = verbose_flag("Log at debug level.")
