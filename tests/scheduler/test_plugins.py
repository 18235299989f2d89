"""Each plugin decides placement: a table of cases, each run through the algorithm with only that plugin
enabled (plus nothing else), asserting which node is chosen, or that none is and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.scheduler.algorithm import Algorithm, Decision
from controlplane.scheduler.config import SchedulerConfig
from controlplane.scheduler.framework import NodeInfo, Snapshot
from controlplane.scheduler.plugins import FILTERS, SCORES


def node(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    taints: list[dict[str, str]] | None = None,
    unschedulable: bool = False,
    ready: str = "True",
) -> core_pb2.Node:
    """A Node manifest, as an agent would register it."""
    obj = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {
                "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                "conditions": [{"type": "Ready", "status": ready}],
            },
        }
    )
    assert isinstance(obj, core_pb2.Node)
    return obj


def pod(name: str = "p", *, labels: dict[str, str] | None = None, owner: str = "", **spec: Any) -> core_pb2.Pod:
    """A Pod; ``cpu``/``memory`` become requests, ``host_port`` a container port."""
    container: dict[str, Any] = {"name": "c", "command": ["x"]}
    requests = {k: spec.pop(k) for k in ("cpu", "memory") if k in spec}
    if requests:
        container["resources"] = {"requests": requests}
    if "host_port" in spec:
        container["ports"] = [{"containerPort": 80, "hostPort": spec.pop("host_port")}]
    meta: dict[str, Any] = {"name": name, "namespace": "default", "labels": labels or {}, "uid": f"uid-{name}"}
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}
        ]
    obj = from_manifest(
        {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [container], **spec}}
    )
    assert isinstance(obj, core_pb2.Pod)
    obj.metadata.uid = f"uid-{name}"
    return obj


@dataclass
class Case:
    """Nodes (with pods already on them), a pod, the plugin under test, and the expected outcome."""

    plugin: str
    nodes: list[core_pb2.Node]
    incoming: core_pb2.Pod
    expect: str | None
    running: dict[str, list[core_pb2.Pod]] = field(default_factory=dict)
    message: str = ""
    feasible: set[str] | None = None
    """Filters: the nodes the filter lets through (default: only the expected one)."""
    claims: list[core_pb2.PersistentVolumeClaim] = field(default_factory=list)
    volumes: list[core_pb2.PersistentVolume] = field(default_factory=list)


def decide(case: Case) -> Decision:
    """Run the algorithm with just the plugin under test (filters: plus LeastAllocated to pick among the
    feasible nodes)."""
    if case.plugin in FILTERS:
        config = SchedulerConfig(filters=(case.plugin,), weights={"LeastAllocated": 1})
    else:
        config = SchedulerConfig(filters=(), weights={case.plugin: 1})
    infos = []
    for n in case.nodes:
        info = NodeInfo(n)
        for p in case.running.get(n.metadata.name, []):
            p.spec.node_name = n.metadata.name
            info.add_pod(p)
        infos.append(info)
    snapshot = Snapshot(
        infos,
        claims={f"{c.metadata.namespace}/{c.metadata.name}": c for c in case.claims},
        volumes={v.metadata.name: v for v in case.volumes},
    )
    return Algorithm(config).explain(snapshot, case.incoming)


def claim(name: str, storage: str = "1Gi", volume: str = "", klass: str = "local") -> core_pb2.PersistentVolumeClaim:
    """A PersistentVolumeClaim in default, bound to ``volume`` if given."""
    obj = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": klass,
                "resources": {"requests": {"storage": storage}},
                "volumeName": volume,
            },
        }
    )
    assert isinstance(obj, core_pb2.PersistentVolumeClaim)
    return obj


def local_volume(name: str, node_name: str, storage: str = "1Gi") -> core_pb2.PersistentVolume:
    """A local PersistentVolume on ``node_name``."""
    obj = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": storage},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "local",
                "local": {"path": name},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
                        ]
                    }
                },
            },
        }
    )
    assert isinstance(obj, core_pb2.PersistentVolume)
    return obj


def with_storage(n: core_pb2.Node, room: str) -> core_pb2.Node:
    n.status.allocatable["navarch.io/local-storage"] = room
    return n


def claimed(name: str = "p") -> core_pb2.Pod:
    p = pod(name)
    p.spec.volumes.add(name="data").persistent_volume_claim.claim_name = "data"
    return p


ZONE = "topology.kubernetes.io/zone"
web = {"app": "web"}
anti_web = {
    "podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": web}, "topologyKey": "navarch.io/hostname"}
        ]
    }
}

CASES = {
    # ----------------------------------------------------------- filters
    "ready-skips-cordoned-and-not-ready": Case(
        "NodeReady",
        [node("a", unschedulable=True), node("b", ready="False"), node("c")],
        pod(),
        "c",
    ),
    "ready-none": Case(
        "NodeReady",
        [node("a", unschedulable=True), node("b", ready="Unknown")],
        pod(),
        None,
        message="0/2 nodes are available: 1 node(s) were not ready, 1 node(s) were unschedulable.",
    ),
    "fit-counts-running-pods": Case(
        "NodeResourcesFit",
        [node("a", cpu="2"), node("b", cpu="2")],
        pod(cpu="1500m"),
        "b",
        running={"a": [pod("old", cpu="1")]},
    ),
    "fit-reasons-per-resource": Case(
        "NodeResourcesFit",
        [node("a", cpu="1", memory="1Gi"), node("b", memory="1Gi"), node("c", pods="1")],
        pod(cpu="2", memory="2Gi"),
        None,
        running={"c": [pod("old")]},
        message="0/3 nodes are available: 2 Insufficient memory, 1 Insufficient cpu, 1 Too many pods.",
    ),
    "node-selector": Case(
        "NodeSelection",
        [node("a", labels={"disk": "hdd"}), node("b", labels={"disk": "ssd"})],
        pod(nodeSelector={"disk": "ssd"}),
        "b",
    ),
    "node-affinity-required": Case(
        "NodeSelection",
        [node("a", labels={"gen": "3"}), node("b", labels={"gen": "5"})],
        pod(
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}]
                    }
                }
            }
        ),
        "b",
    ),
    "taints-need-tolerations": Case(
        "TaintToleration",
        [node("gpu", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]), node("plain")],
        pod(),
        "plain",
    ),
    "taints-tolerated": Case(
        "TaintToleration",
        [
            node("gpu", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            # As the node lifecycle controller taints a silent node; the pod's default toleration (added at
            # admission) covers only the NoExecute half.
            node(
                "gone",
                taints=[
                    {"key": "node.navarch.io/unreachable", "effect": "NoSchedule"},
                    {"key": "node.navarch.io/unreachable", "effect": "NoExecute"},
                ],
            ),
        ],
        pod(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]),
        "gpu",
    ),
    "taints-message": Case(
        "TaintToleration",
        [node("gpu", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])],
        pod(),
        None,
        message="0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}.",
    ),
    "host-ports": Case(
        "NodePorts",
        [node("a"), node("b")],
        pod(host_port=8080),
        "b",
        running={"a": [pod("old", host_port=8080)]},
    ),
    "volume-bound-to-a-node": Case(
        "VolumeBinding",
        [node("a"), node("b"), node("c")],
        claimed(),
        "b",
        claims=[claim("data", volume="pv-b")],
        volumes=[local_volume("pv-b", "b")],
    ),
    "volume-needs-room": Case(
        "VolumeBinding",
        [with_storage(node("a"), "10Gi"), with_storage(node("b"), "10Gi"), with_storage(node("c"), "1Gi")],
        claimed(),
        "b",
        claims=[claim("data", "5Gi")],
        volumes=[local_volume("pv-a", "a", "6Gi")],  # a holds 6 of its 10; c has only 1
    ),
    "volume-claim-missing": Case(
        "VolumeBinding",
        [node("a")],
        claimed(),
        None,
        message='0/1 nodes are available: 1 persistentvolumeclaim "data" not found.',
    ),
    "pod-anti-affinity": Case(
        "InterPodAffinity",
        [node(n, labels={"navarch.io/hostname": n}) for n in ("a", "b")],
        pod(labels=web, affinity=anti_web),
        "b",
        running={"a": [pod("old", labels=web)]},
    ),
    "existing-pods-anti-affinity": Case(
        "InterPodAffinity",
        [node(n, labels={"navarch.io/hostname": n}) for n in ("a", "b")],
        pod(labels=web),
        "b",
        running={"a": [pod("old", labels={"app": "db"}, affinity=anti_web)]},
    ),
    "pod-affinity-zone": Case(
        "InterPodAffinity",
        [node("a", labels={ZONE: "z1"}), node("b", labels={ZONE: "z2"}), node("c", labels={ZONE: "z2"})],
        pod(
            affinity={
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": ZONE}
                    ]
                }
            }
        ),
        "c",
        running={"b": [pod("cache", labels={"app": "cache"}, cpu="3")]},
        feasible={"b", "c"},
    ),
    "topology-spread-hard": Case(
        "PodTopologySpread",
        [node("a", labels={ZONE: "z1"}), node("b", labels={ZONE: "z2"}), node("nozone")],
        pod(
            labels=web,
            topologySpreadConstraints=[
                {
                    "maxSkew": 1,
                    "topologyKey": ZONE,
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": web},
                }
            ],
        ),
        "b",
        running={"a": [pod("w1", labels=web)]},
    ),
    # ------------------------------------------------------------ scores
    "least-allocated": Case(
        "LeastAllocated", [node("busy"), node("idle")], pod(cpu="1"), "idle", running={"busy": [pod("old", cpu="2")]}
    ),
    "balanced-allocation": Case(
        "BalancedAllocation",
        [node("cpu-heavy"), node("balanced")],
        pod(cpu="1", memory="2Gi"),
        "balanced",
        running={"cpu-heavy": [pod("old", cpu="3")]},
    ),
    "node-affinity-preferred": Case(
        "NodeAffinityPreferred",
        [node("a", labels={"disk": "hdd"}), node("b", labels={"disk": "ssd"})],
        pod(
            affinity={
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 10,
                            "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]},
                        }
                    ]
                }
            }
        ),
        "b",
    ),
    "prefer-no-schedule": Case(
        "TaintPreferNoSchedule",
        [node("soft", taints=[{"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}]), node("plain")],
        pod(),
        "plain",
    ),
    "pod-affinity-preferred": Case(
        "InterPodAffinityPreferred",
        [node(n, labels={"navarch.io/hostname": n}) for n in ("a", "b", "c")],
        pod(
            affinity={
                "podAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 50,
                            "podAffinityTerm": {
                                "labelSelector": {"matchLabels": {"app": "cache"}},
                                "topologyKey": "navarch.io/hostname",
                            },
                        }
                    ]
                }
            }
        ),
        "c",
        running={"c": [pod("cache", labels={"app": "cache"})]},
    ),
    "owner-spread": Case(
        "OwnerSpread",
        [node("a", labels={ZONE: "z1"}), node("b", labels={ZONE: "z1"}), node("c", labels={ZONE: "z2"})],
        pod(owner="rs-1"),
        "c",
        running={"a": [pod("r1", owner="rs-1")], "b": [pod("r2", owner="rs-1")]},
    ),
    "topology-spread-soft": Case(
        "PodTopologySpreadPreferred",
        [node("a", labels={ZONE: "z1"}), node("b", labels={ZONE: "z2"})],
        pod(
            labels=web,
            topologySpreadConstraints=[
                {
                    "maxSkew": 1,
                    "topologyKey": ZONE,
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": web},
                }
            ],
        ),
        "b",
        running={"a": [pod("w1", labels=web), pod("w2", labels=web)]},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plugin_decides_placement(case: Case) -> None:
    decision = decide(case)
    assert decision.node == case.expect
    if case.message:
        assert decision.message(len(case.nodes)) == case.message
    if case.plugin in FILTERS:
        # The filter itself let exactly these nodes through; every other one names it as the reason.
        feasible = {v.node for v in decision.verdicts if v.status.ok}
        assert feasible == (case.feasible if case.feasible is not None else ({case.expect} - {None}))
        assert all(v.filter == case.plugin for v in decision.verdicts if not v.status.ok)
    else:
        # The plugin's own score makes the winner: strictly above every other node's.
        scores = {v.node: v.scores[case.plugin] for v in decision.verdicts}
        assert all(scores[case.expect or ""] > s for n, s in scores.items() if n != case.expect), scores


def test_every_plugin_has_a_case() -> None:
    assert {c.plugin for c in CASES.values()} == set(FILTERS) | set(SCORES)
