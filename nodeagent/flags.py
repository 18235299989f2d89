"""``navarch-agent``'s flags, each written once (``controlplane.client.options``)."""

from __future__ import annotations

from dataclasses import dataclass

import click

from controlplane import addresses
from controlplane.client.component import metrics_listen_flag, servers_flag, verbose_flag
from controlplane.client.options import flag

_FILE = click.Path(exists=True, dir_okay=False)
_DIR = click.Path(file_okay=False)


@dataclass(frozen=True)
class AgentFlags:
    """Everything the command line says; ``main`` turns it into an ``AgentConfig``."""

    servers: list[str] = servers_flag()
    node_name: str | None = flag(help="Node name (default: the host name).")
    node_ip: str | None = flag(help="Node IP (default: the address used to reach the API server).")
    data_dir: str | None = flag(type=_DIR, help="Sandboxes, logs and state.")
    labels: str = flag(default="", help="Extra node labels: k=v,...")
    taints: str = flag(default="", help="Node taints: k=v:Effect,...")
    capacity: str = flag(default="", help="Override detected capacity: cpu=4,memory=8Gi,pods=110")
    reserved: str = flag(default="cpu=100m,memory=256Mi", help="Held back from allocatable.")
    artifact_cache_mib: int = flag(
        default=2048,
        type=click.IntRange(min=1),
        help="Size of the node's artifact cache; least recently used artifacts go beyond it.",
    )
    artifact_timeout: float = flag(
        default=300.0, type=click.FloatRange(min=1), help="Seconds one artifact's fetch may take, retries included."
    )
    artifact_ca_file: str | None = flag(help="CA bundle for https artifacts (default: the system's).")
    artifact_file_urls: bool = flag(
        default=False,
        is_flag=True,
        help="Allow file:// artifact URLs (a pod could then read any node file whose hash it knows: tests only).",
    )
    dynamic_port_range: str = flag(
        default="20000-29999",
        help="Host ports for containerPort 0 (keep it clear of the NodePort range and of ephemeral ports).",
    )
    listen: str = flag(
        default="0.0.0.0:10250",
        callback=addresses.listen_option_callback,
        help="The agent's gRPC endpoint (logs, exec).",
    )
    proxy_from: str = flag(
        default="",
        help="Networks (CIDR, comma separated) allowed to call the agent (default: the API servers' addresses).",
    )
    lease_interval: float = flag(
        default=10.0, type=click.FloatRange(min=0.1), help="Seconds between node Lease renewals."
    )
    lease_duration: int = flag(
        default=40,
        type=click.IntRange(min=1),
        help="leaseDurationSeconds of the node Lease: past it without renewal the node counts as unreachable.",
    )
    backoff_initial: float = flag(
        default=10.0, type=click.FloatRange(min=0.01), help="CrashLoopBackOff first delay (seconds)."
    )
    backoff_max: float = flag(
        default=300.0, type=click.FloatRange(min=0.01), help="CrashLoopBackOff longest delay (seconds)."
    )
    volume_refresh: float = flag(
        default=10.0,
        type=click.FloatRange(min=0.1),
        help="Seconds between refreshes of configMap and secret volumes.",
    )
    log_max_bytes: int = flag(default=10 * 1024 * 1024, type=click.IntRange(min=1024))
    log_keep: int = flag(default=3, type=click.IntRange(min=0))
    drain_on_exit: bool = flag(default=False, is_flag=True, help="Stop every pod when the agent stops.")
    service_proxy: bool = flag(
        "--service-proxy/--no-service-proxy",
        default=True,
        show_default=True,
        help="Serve Services' cluster IPs and node ports on this node.",
    )
    proxy_balance: str = flag(
        default="round-robin",
        type=click.Choice(["round-robin", "least-connections"]),
        help="How the node proxy picks a Service backend.",
    )
    cgroups: bool = flag(
        "--cgroups/--no-cgroups",
        default=True,
        show_default=True,
        help="Enforce limits with cgroups where writable (else setrlimit for memory).",
    )
    hollow: bool = flag(default=False, is_flag=True, help="Simulate --count nodes in this process (scale tests only).")
    count: int = flag(default=1, type=click.IntRange(min=1), help="Hollow nodes to run.")
    name_prefix: str = flag(default="hollow-", help="Hollow node names: PREFIX0, PREFIX1...")
    hollow_watch: str = flag(
        default="per-node",
        type=click.Choice(["per-node", "shared"]),
        help="per-node: each hollow node watches its own pods, as real agents do; shared: one pod watch for all "
        "(lighter for this process, but the API server then serves one watch instead of one per node).",
    )
    certificate_authority: str | None = flag(type=_FILE, help="Cluster CA (with a pre-issued cert).")
    client_certificate: str | None = flag(type=_FILE, help="Pre-issued node certificate.")
    client_key: str | None = flag(type=_FILE, help="Its key.")
    join_token: str | None = flag(envvar="NAVARCH_JOIN_TOKEN", help="Bootstrap token (navarch token create).")
    ca_cert_hash: str | None = flag(help="sha256:<hex> pin of the cluster CA (navarch token create prints it).")
    bootstrap_server: str | None = flag(
        callback=addresses.address_option_callback, help="API server token port to join through (host:port)."
    )
    cert_dir: str | None = flag(type=_DIR, help="Node certificate directory (default DATA_DIR/pki).")
    run_as_user: int = flag(
        default=65534, type=click.IntRange(min=0), help="UID of workloads without runAsUser when the agent is root."
    )
    run_as_group: int = flag(default=65534, type=click.IntRange(min=0))
    refuse_root_workloads: bool = flag(default=False, is_flag=True, help="Fail pods that would run as uid 0.")
    metrics_listen: str = metrics_listen_flag()
    shim: str = flag(
        default="auto",
        type=click.Choice(["auto", "native", "python"]),
        help="Per-container supervisor: native (compiled at start, ~2 MiB each), python (~12 MiB), auto.",
    )
    limits_mode: str = flag(
        default="enforce",
        type=click.Choice(["enforce", "observe"]),
        help="observe: enforce no limits (cgroups still account), report would-be OOM kills as Events.",
    )
    usage_interval: float = flag(
        default=10.0,
        type=click.FloatRange(min=1.0),
        help="Seconds between samples of node and container usage (navarch top, autoscaling).",
    )
    verbose: bool = verbose_flag()
