"""The built-in plugins, by name: each filter and score is one class with one method, in its own module."""

from __future__ import annotations

from controlplane.scheduler.framework import FilterPlugin, ScorePlugin
from controlplane.scheduler.plugins.balanced_allocation import BalancedAllocation
from controlplane.scheduler.plugins.inter_pod_affinity import InterPodAffinity
from controlplane.scheduler.plugins.inter_pod_affinity_preferred import InterPodAffinityPreferred
from controlplane.scheduler.plugins.least_allocated import LeastAllocated
from controlplane.scheduler.plugins.node_affinity_preferred import NodeAffinityPreferred
from controlplane.scheduler.plugins.node_ports import NodePorts
from controlplane.scheduler.plugins.node_ready import NodeReady
from controlplane.scheduler.plugins.node_resources_fit import NodeResourcesFit
from controlplane.scheduler.plugins.node_selection import NodeSelection
from controlplane.scheduler.plugins.owner_spread import OwnerSpread
from controlplane.scheduler.plugins.taint_prefer_no_schedule import TaintPreferNoSchedule
from controlplane.scheduler.plugins.taint_toleration import TaintToleration
from controlplane.scheduler.plugins.topology_spread import PodTopologySpread
from controlplane.scheduler.plugins.topology_spread_preferred import PodTopologySpreadPreferred
from controlplane.scheduler.plugins.volume_binding import VolumeBinding

FILTERS: dict[str, type[FilterPlugin]] = {
    p.name: p
    for p in (
        # Cheap, selective filters first: most nodes are rejected before the expensive ones run.
        NodeReady,
        NodeSelection,
        TaintToleration,
        NodeResourcesFit,
        NodePorts,
        VolumeBinding,
        PodTopologySpread,
        InterPodAffinity,
    )
}
"""Filter plugins in the order they run."""

SCORES: dict[str, type[ScorePlugin]] = {
    p.name: p
    for p in (
        LeastAllocated,
        BalancedAllocation,
        NodeAffinityPreferred,
        TaintPreferNoSchedule,
        InterPodAffinityPreferred,
        OwnerSpread,
        PodTopologySpreadPreferred,
    )
}
"""Score plugins by name."""

DEFAULT_WEIGHTS: dict[str, int] = {
    "LeastAllocated": 1,
    "BalancedAllocation": 1,
    "NodeAffinityPreferred": 2,
    "TaintPreferNoSchedule": 3,
    "InterPodAffinityPreferred": 2,
    "OwnerSpread": 1,
    "PodTopologySpreadPreferred": 2,
}
"""Kubernetes' default weights where it has the plugin."""
