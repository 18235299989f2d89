"""The controller manager's configuration: one frozen dataclass, filled from flags."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ControllerManagerConfig:
    """Tunables of every controller (Kubernetes' defaults unless noted)."""

    concurrent_syncs: dict[str, int] = field(default_factory=dict)
    """Workers per controller name; a controller not named uses its own default."""
    node_monitor_grace_period: float = 40.0
    """Seconds without a Lease renewal after which a node is marked Ready=Unknown and tainted unreachable."""
    node_startup_grace_period: float = 60.0
    """Seconds a newly registered node gets before its silence counts."""
    node_monitor_period: float = 5.0
    """Seconds between node health checks."""
    node_eviction_rate: float = 0.1
    """Nodes per second (per zone) that may be tainted NoExecute while the zone is healthy."""
    secondary_node_eviction_rate: float = 0.01
    """Nodes per second (per zone) while more than ``unhealthy_zone_threshold`` of a large zone is down."""
    unhealthy_zone_threshold: float = 0.55
    """Fraction of not-Ready nodes (at least 3) above which a zone is partially disrupted."""
    large_cluster_size_threshold: int = 50
    """Zones of at most this many nodes stop evicting entirely when partially disrupted."""
    job_backoff_base: float = 10.0
    """Seconds before the first retry of a failed Job pod; doubles per failure up to ``job_backoff_max``."""
    job_backoff_max: float = 360.0
    """Longest wait before a Job pod is retried."""
    burst_replicas: int = 500
    """Most pods one ReplicaSet/Job/DaemonSet sync creates or deletes."""
    expectations_timeout: float = 300.0
    hpa_sync_period: float = 15.0
    """Seconds between two syncs of one HorizontalPodAutoscaler (``--horizontal-pod-autoscaler-sync-period``)."""
    hpa_downscale_stabilization: int = 300
    """Scale-down stabilization window for HPAs that set none (seconds)."""
    hpa_tolerance: float = 0.1
    """How far from its target a metric may be before the HPA acts (a fraction)."""
    """Seconds after which unobserved creations/deletions stop holding a controller back."""
