"""Preemption's choice, as pure functions over hand-made nodes: which node, which victims, and the room a
nominated pod holds."""

from __future__ import annotations

from controlplane.api.pb import core_pb2, policy_pb2
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.scheduler import preemption
from controlplane.scheduler.config import SchedulerConfig
from controlplane.scheduler.framework import Code, NodeInfo, Snapshot, pod_requests
from controlplane.scheduler.scheduler import Scheduler


def node(name: str, cpu: str = "1") -> NodeInfo:
    n = core_pb2.Node()
    n.metadata.name = name
    n.status.allocatable["cpu"] = cpu
    n.status.allocatable["pods"] = "110"
    return NodeInfo(n)


def pod(name: str, cpu_milli: int, prio: int, started: int = 0, **labels: str) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name = p.metadata.uid = name
    p.metadata.namespace = "ns"
    p.metadata.labels.update(labels)
    p.spec.priority = prio
    p.status.start_time.seconds = started
    p.spec.containers.add(name="c").resources.requests["cpu"] = f"{cpu_milli}m"
    return p


def fits_cpu(pod_: core_pb2.Pod):  # type: ignore[no-untyped-def]
    need = pod_requests(pod_).cpu

    def fits(_: Snapshot, info: NodeInfo) -> bool:
        return info.allocatable.cpu - info.requested.cpu >= need

    return fits


def test_victims_are_the_fewest_least_important_pods_and_the_node_the_cheapest() -> None:
    a, b = node("a"), node("b")
    for p in (
        pod("a-mid", 100, 20),
        pod("a-low-old", 300, 10, 1),
        pod("a-low-2", 300, 10, 2),
        pod("a-low-3", 300, 10, 3),
    ):
        a.add_pod(p)
    for p in (pod("b-high", 600, 500), pod("b-low", 400, 10)):
        b.add_pod(p)
    big = pod("big", 500, 1000)
    snap = Snapshot([a, b])
    found = preemption.find(snap, big, {"a": Code.UNSCHEDULABLE, "b": Code.UNSCHEDULABLE}, fits_cpu(big), [])
    assert found is not None
    # On b the pod in the way has priority 500; on a two low pods (priority 10), the newest, are cheaper.
    assert found.node == "a"
    assert sorted(v.metadata.name for v in found.victims) == ["a-low-2", "a-low-3"]


def test_unresolvable_nodes_and_policy_never_are_not_preempted() -> None:
    a = node("a")
    a.add_pod(pod("low", 1000, 1))
    big = pod("big", 500, 1000)
    assert preemption.find(Snapshot([a]), big, {"a": Code.UNRESOLVABLE}, fits_cpu(big), []) is None
    big.spec.preemption_policy = "Never"
    assert preemption.find(Snapshot([a]), big, {"a": Code.UNSCHEDULABLE}, fits_cpu(big), []) is None


def test_a_budget_counts_as_a_violation_only_when_nothing_else_makes_room() -> None:
    a, b = node("a"), node("b")
    a.add_pod(pod("guarded", 1000, 1, app="db"))
    b.add_pod(pod("free", 1000, 5))  # higher priority than the guarded one, but breaks no budget
    budget = policy_pb2.PodDisruptionBudget()
    budget.metadata.namespace, budget.metadata.uid = "ns", "u"
    budget.spec.selector.match_labels["app"] = "db"
    budget.status.disruptions_allowed = 0
    big = pod("big", 500, 1000)
    rejections = {"a": Code.UNSCHEDULABLE, "b": Code.UNSCHEDULABLE}
    found = preemption.find(Snapshot([a, b]), big, rejections, fits_cpu(big), [budget])
    assert found is not None and found.node == "b" and found.violations == 0
    found = preemption.find(Snapshot([a]), big, {"a": Code.UNSCHEDULABLE}, fits_cpu(big), [budget])
    assert found is not None and found.violations == 1  # the only way: the budget is broken, and counted


async def test_the_room_of_a_nominated_pod_is_held_against_less_important_pods() -> None:
    client = ApiClient(ClientConfig(endpoints=["127.0.0.1:1"]))  # never called: the scheduler is not run
    s = Scheduler(client, SchedulerConfig(), "unit")
    empty = core_pb2.Node()
    empty.metadata.name = "a"
    empty.status.allocatable["cpu"] = "1"
    s.cache.set_node(empty)
    big = pod("big", 1000, 1000)
    s.nominated["big"] = ("a", big)
    lesser, greater = pod("lesser", 500, 10), pod("greater", 500, 2000)
    assert s._snapshot_for(lesser).by_name["a"].requested.cpu == 1000
    assert s._snapshot_for(greater).by_name["a"].requested.cpu == 0
    assert s._snapshot_for(big).by_name["a"].requested.cpu == 0  # not against itself
    assert s.cache.nodes["a"].requested.cpu == 0  # the cache itself is untouched
    await client.close()
