"""The scheduling framework: what plugins see (NodeInfo, Snapshot, CycleState) and what they return (Status).

A scheduling cycle for one Pod::

    snapshot (taken once per cycle, no API calls)
        |
        v
    Filter plugins, cheapest first, per node  --any Unschedulable-->  node rejected (reasons kept)
        |  feasible nodes (a sample of them when percentageOfNodesToScore < 100)
        v
    Score plugins, per feasible node -> normalized to 0..100 -> weighted sum
        |
        v
    highest total (ties broken by a hash of pod uid + node name) -> assume -> bind (asynchronously)

A filter plugin is one class with one method, ``filter(state, pod, node) -> Status``; a score plugin is one
class with one method, ``score(state, pod, node) -> float``, plus a class attribute ``normalize`` saying how
its raw values become 0..100 across the feasible nodes. A plugin may also have ``applies(state, pod)``
(Kubernetes' "Skip" from PreFilter/PreScore): when it says False, the plugin sits the cycle out, which is what
keeps a cycle over 1,000 nodes cheap for ordinary pods. Per-cycle work a plugin wants to do once (counting
matching pods per topology domain, parsing selectors) is memoized in the ``CycleState``.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from controlplane.api.conditions import node_ready
from controlplane.api.pb import core_pb2
from controlplane.api.quantity import parse_quantity


class Code(enum.Enum):
    """A plugin's verdict."""

    SUCCESS = "Success"
    UNSCHEDULABLE = "Unschedulable"
    UNRESOLVABLE = "UnschedulableAndUnresolvable"
    ERROR = "Error"


@dataclass(frozen=True)
class Status:
    """A verdict with the reasons a user sees (``Insufficient cpu``)."""

    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the node passed."""
        return self.code is Code.SUCCESS


SUCCESS = Status()


def unschedulable(*reasons: str) -> Status:
    """The node does not fit, for these reasons."""
    return Status(Code.UNSCHEDULABLE, reasons)


def unresolvable(*reasons: str) -> Status:
    """The node cannot fit whatever happens to other pods (e.g. a selector mismatch)."""
    return Status(Code.UNRESOLVABLE, reasons)


# ----------------------------------------------------------------- resources


def _milli(text: str) -> int:
    return int(parse_quantity(text) * 1000)


def _bytes(text: str) -> int:
    return int(parse_quantity(text))


@dataclass
class Resources:
    """CPU in millicores, memory in bytes, pod count."""

    cpu: int = 0
    memory: int = 0
    pods: int = 0

    def add(self, other: Resources, sign: int = 1) -> None:
        """Add (or with sign=-1, subtract) another amount."""
        self.cpu += sign * other.cpu
        self.memory += sign * other.memory
        self.pods += sign * other.pods


def pod_requests(pod: core_pb2.Pod) -> Resources:
    """What a pod asks for: the sum over containers, or the largest init container if that is more."""
    cpu = memory = 0
    for c in pod.spec.containers:
        r = c.resources.requests
        cpu += _milli(r["cpu"]) if "cpu" in r else 0
        memory += _bytes(r["memory"]) if "memory" in r else 0
    for c in pod.spec.init_containers:
        r = c.resources.requests
        cpu = max(cpu, _milli(r["cpu"]) if "cpu" in r else 0)
        memory = max(memory, _bytes(r["memory"]) if "memory" in r else 0)
    return Resources(cpu, memory, 1)


def node_allocatable(node: core_pb2.Node) -> Resources:
    """What a node offers to pods (allocatable, else capacity)."""
    a = node.status.allocatable or node.status.capacity
    return Resources(
        _milli(a["cpu"]) if "cpu" in a else 0,
        _bytes(a["memory"]) if "memory" in a else 0,
        int(parse_quantity(a["pods"])) if "pods" in a else 110,
    )


def host_ports(pod: core_pb2.Pod) -> set[tuple[str, str, int]]:
    """(host IP, protocol, port) of every hostPort the pod asks for."""
    out: set[tuple[str, str, int]] = set()
    for c in pod.spec.containers:
        for p in c.ports:
            if p.host_port:
                out.add((p.host_ip or "0.0.0.0", p.protocol or "TCP", p.host_port))
    return out


# ------------------------------------------------------------------ NodeInfo


class NodeInfo:
    """A node and the pods on it (bound or assumed), with their sums, as the scheduler's cache keeps them."""

    def __init__(self, node: core_pb2.Node) -> None:
        self.node = node
        self.name = node.metadata.name
        self.labels: dict[str, str] = dict(node.metadata.labels)
        self.allocatable = node_allocatable(node)
        self.ready = node_ready(node)
        self.tiebreak = zlib.crc32(self.name.encode())
        """A per-node number mixed with the pod's to break ties cheaply and reproducibly."""
        self.pods: dict[str, core_pb2.Pod] = {}
        self.requested = Resources()
        self.ports: set[tuple[str, str, int]] = set()
        self.generation = 0
        """Bumped on every change, so snapshots can share unchanged NodeInfos."""

    def set_node(self, node: core_pb2.Node) -> None:
        """A newer version of the Node."""
        self.node = node
        self.labels = dict(node.metadata.labels)
        self.allocatable = node_allocatable(node)
        self.ready = node_ready(node)
        self.generation += 1

    def add_pod(self, pod: core_pb2.Pod) -> None:
        """Count a pod on this node."""
        uid = pod.metadata.uid
        if uid in self.pods:
            self.remove_pod(uid)
        self.pods[uid] = pod
        self.requested.add(pod_requests(pod))
        self.ports |= host_ports(pod)
        self.generation += 1

    def remove_pod(self, uid: str) -> None:
        """Stop counting a pod."""
        pod = self.pods.pop(uid, None)
        if pod is None:
            return
        self.requested.add(pod_requests(pod), -1)
        self.ports = set().union(*(host_ports(p) for p in self.pods.values())) if self.pods else set()
        self.generation += 1

    def clone(self) -> NodeInfo:
        """A copy a scheduling cycle may change (assume) without touching the cache."""
        copy = NodeInfo.__new__(NodeInfo)
        copy.node, copy.name, copy.labels, copy.allocatable = self.node, self.name, self.labels, self.allocatable
        copy.ready, copy.tiebreak = self.ready, self.tiebreak
        copy.pods = dict(self.pods)
        copy.requested = Resources(self.requested.cpu, self.requested.memory, self.requested.pods)
        copy.ports = set(self.ports)
        copy.generation = self.generation
        return copy


def has_required_anti_affinity(pod: core_pb2.Pod) -> bool:
    """Whether a pod has required anti-affinity terms (which constrain every pod placed near it)."""
    return bool(pod.spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution)


@dataclass
class Snapshot:
    """The cluster as one scheduling cycle sees it."""

    nodes: list[NodeInfo]
    by_name: dict[str, NodeInfo] = field(default_factory=dict)
    anti_affinity_pods: int | None = None
    """How many placed pods have required anti-affinity (counted from the nodes if not given)."""
    claims: Mapping[str, core_pb2.PersistentVolumeClaim] = field(default_factory=dict)
    """PersistentVolumeClaims by ``namespace/name`` (the volume plugin's view)."""
    volumes: Mapping[str, core_pb2.PersistentVolume] = field(default_factory=dict)
    """PersistentVolumes by name."""

    def __post_init__(self) -> None:
        if not self.by_name:
            self.by_name = {n.name: n for n in self.nodes}
        if self.anti_affinity_pods is None:
            self.anti_affinity_pods = sum(1 for _, p in self.all_pods() if has_required_anti_affinity(p))

    def all_pods(self) -> Iterable[tuple[NodeInfo, core_pb2.Pod]]:
        """Every (node, pod) pair."""
        for info in self.nodes:
            for pod in info.pods.values():
                yield info, pod


class CycleState:
    """Per-cycle memo: a plugin computes something once per (pod, snapshot) and reuses it for every node."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._memo: dict[str, Any] = {}

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """The value stored under ``key``, computed on first use."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


# ------------------------------------------------------------------- plugins

Normalize = Literal["none", "max", "reverse", "minmax"]


class FilterPlugin(Protocol):
    """Decides whether a pod may run on a node."""

    name: ClassVar[str]

    def filter(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> Status:
        """SUCCESS, or why not."""
        ...


class ScorePlugin(Protocol):
    """Ranks the feasible nodes for a pod (higher is better)."""

    name: ClassVar[str]
    normalize: ClassVar[Normalize]
    """none: already 0..100; max: scaled so the best is 100; reverse: the lowest raw value scores 100;
    minmax: scaled from the lowest (0) to the highest (100)."""

    def score(self, state: CycleState, pod: core_pb2.Pod, node: NodeInfo) -> float:
        """The raw score of ``node``."""
        ...


def normalize(kind: Normalize, raw: list[float]) -> list[float]:
    """Raw scores of the feasible nodes, as 0..100."""
    if kind == "none" or not raw:
        return raw
    hi, lo = max(raw), min(raw)
    if kind == "max":
        return [100.0 * r / hi if hi > 0 else 0.0 for r in raw]
    if kind == "reverse":
        return [100.0 - 100.0 * r / hi if hi > 0 else 100.0 for r in raw]
    span = hi - lo
    return [100.0 * (r - lo) / span if span > 0 else 0.0 for r in raw]
