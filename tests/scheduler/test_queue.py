"""The scheduling queue: priority order, per-pod back-off, parking and cluster events (with a test clock)."""

from __future__ import annotations

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.scheduler.queue import SchedulingQueue


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pod(name: str, priority: int = 0) -> core_pb2.Pod:
    obj = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"priority": priority, "containers": [{"name": "c", "command": ["x"]}]},
        }
    )
    assert isinstance(obj, core_pb2.Pod)
    obj.metadata.uid = name
    return obj


async def test_higher_priority_first_then_oldest() -> None:
    q = SchedulingQueue()
    for name, prio in (("low", 0), ("high", 10), ("low2", 0)):
        q.add(pod(name, prio))
    order = []
    for _ in range(3):
        qp = await q.pop(timeout=0.1)
        assert qp is not None
        order.append(qp.pod.metadata.name)
    assert order == ["high", "low", "low2"]
    assert await q.pop(timeout=0.05) is None


async def test_back_off_doubles_up_to_the_cap() -> None:
    clock = Clock()
    q = SchedulingQueue(backoff_initial=1.0, backoff_max=4.0, clock=clock)
    q.add(pod("p"))
    delays = []
    for _ in range(5):
        qp = await q.pop(timeout=0)
        assert qp is not None
        delays.append(q.backoff_of(qp))
        q.retry_later(qp)
        assert q.lengths() == (0, 1, 0)
        clock.now += delays[-1] - 0.01
        assert await q.pop(timeout=0) is None  # not yet
        clock.now += 0.01
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]


async def test_parked_pods_move_on_a_cluster_event_or_after_the_retry_period() -> None:
    clock = Clock()
    q = SchedulingQueue(backoff_initial=1.0, retry=60.0, clock=clock)
    q.add(pod("p"))
    qp = await q.pop(timeout=0)
    assert qp is not None
    q.unschedulable(qp)
    assert q.lengths() == (0, 0, 1)
    clock.now += 5  # back-off (1 s) long over
    q.move_all()
    assert (await q.pop(timeout=0)) is qp
    q.unschedulable(qp)
    clock.now += 59
    assert await q.pop(timeout=0) is None  # parked, no event
    clock.now += 2
    assert (await q.pop(timeout=0)) is qp  # the periodic retry


async def test_an_event_during_the_attempt_is_not_lost() -> None:
    clock = Clock()
    q = SchedulingQueue(backoff_initial=1.0, clock=clock)
    q.add(pod("p"))
    qp = await q.pop(timeout=0)
    assert qp is not None
    q.move_all()  # e.g. a node was added while this pod was being scheduled
    q.unschedulable(qp)
    assert q.lengths() == (0, 1, 0)  # backing off, not parked


async def test_a_changed_spec_is_retried_at_once_and_deleted_pods_leave() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add(pod("p"))
    qp = await q.pop(timeout=0)
    assert qp is not None
    q.unschedulable(qp)
    changed = pod("p")
    changed.spec.node_selector["disk"] = "ssd"
    q.add(changed)
    again = await q.pop(timeout=0)
    assert again is not None and again.pod.spec.node_selector["disk"] == "ssd"
    q.delete("p")
    assert "p" not in q and q.lengths() == (0, 0, 0)
