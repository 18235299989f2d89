"""The agent's configuration (from flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.certificates import NodeTLSConfig


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent is started with."""

    servers: list[str]
    """API server endpoints (failover between them)."""
    node_name: str
    """The Node this agent registers and runs pods for."""
    node_ip: str
    """The address pods and other nodes reach this node at (also each pod's IP)."""
    data_dir: Path
    """Where pod sandboxes, logs and the agent's state live."""
    labels: dict[str, str] = field(default_factory=dict)
    """Extra Node labels."""
    taints: list[tuple[str, str, str]] = field(default_factory=list)
    """(key, value, effect) taints of the Node."""
    capacity: dict[str, str] = field(default_factory=dict)
    """Overrides of detected capacity (cpu, memory, pods)."""
    reserved: dict[str, str] = field(default_factory=lambda: {"cpu": "100m", "memory": "256Mi"})
    """Held back from capacity for the system: allocatable = capacity - reserved."""
    listen: str = "0.0.0.0:10250"
    """The agent's own gRPC endpoint (logs, exec)."""
    proxy_from: list[str] = field(default_factory=list)
    """Networks allowed to call the agent's endpoint (empty: the API servers' own addresses)."""
    lease_interval: float = 10.0
    """Seconds between renewals of the node's Lease."""
    lease_duration: int = 40
    """leaseDurationSeconds written into the Lease."""
    status_interval: float = 60.0
    """Node conditions are written when they change and at least this often."""
    backoff_initial: float = 10.0
    """CrashLoopBackOff: first delay before restarting a crashed container."""
    backoff_max: float = 300.0
    """CrashLoopBackOff: the longest delay."""
    backoff_reset: float = 600.0
    """A container that ran this long without crashing starts its back-off afresh."""
    log_max_bytes: int = 10 * 1024 * 1024
    """Rotate a container's log file beyond this size."""
    log_keep: int = 3
    """Rotated log files kept per container."""
    volume_refresh: float = 10.0
    """Seconds between refreshes of configMap and secret volumes."""
    cgroups: bool = True
    """Enforce limits with cgroups where the host allows (else setrlimit for memory)."""
    drain_on_exit: bool = False
    service_proxy: bool = True
    """Serve Services' cluster IPs and node ports on this node (the node proxy)."""
    proxy_balance: str = "round-robin"
    """How the node proxy picks a backend: round-robin or least-connections."""
    tls: NodeTLSConfig | None = None
    """The node's certificate (mutual TLS to the API servers and on its endpoint); None: plain text (loopback)."""
    run_as_user: int | None = 65534
    """Workloads without securityContext.runAsUser run as this user when the agent is root (None: as root)."""
    run_as_group: int | None = 65534
    """... and this group."""
    artifact_cache_bytes: int = 2 << 30
    """The artifact cache's size; least recently used entries go beyond it."""
    artifact_timeout: float = 300.0
    """Seconds one artifact's fetch may take, retries included."""
    artifact_ca_file: str | None = None
    """CA bundle for https artifacts (default: the system's)."""
    artifact_file_urls: bool = False
    """Allow file:// artifact URLs (they read any file of the node whose hash is known: tests only)."""
    dynamic_ports: tuple[int, int] = (20000, 29999)
    """Host ports handed out for ``containerPort: 0`` (inclusive; below the NodePort range 30000-32767)."""
    metrics_listen: str = ""
    """``host:port`` of /metrics, /healthz, /readyz (HTTPS with the node certificate; loopback HTTP without
    TLS); "": none."""
    shim: str = "auto"
    """The per-container supervisor: ``native`` (compiled at start, nodeagent/nativeshim.py; the agent fails
    to start without it), ``python``, or ``auto`` (native where it can be built, else python)."""
    limits_mode: str = "enforce"
    """``enforce`` (cgroups or rlimit) or ``observe``: nothing enforced, would-be OOM kills reported as Events."""
    usage_interval: float = 10.0
    """Seconds between usage samples (``navarch top``, the autoscaler, /metrics)."""
    refuse_root: bool = False
    """Refuse pods that would run as root (uid 0)."""
    """Stop every pod when the agent stops (default: leave workloads running)."""
