"""The StatusPublisher with a fake client: a quick start costs one write carrying its final state, a slow one
still reports after the hold, unchanged statuses are never written, and a pod replaced by another of the
same name is not written to (plausible bugs: Pending then Running written for every start; a pod whose
containers never start never reported; a write per mark even when nothing changed)."""

from __future__ import annotations

import asyncio

from controlplane.api.pb import core_pb2
from nodeagent.pod.status import StatusPublisher
from tests.helpers import eventually
from tests.unit.pod.fakes import pod


class FakeClient:
    def __init__(self, uid: str = "uid-1") -> None:
        self.writes: list[str] = []
        self.uid = uid

    async def update_status(self, obj: core_pb2.Pod) -> core_pb2.Pod:
        self.writes.append(obj.status.phase)
        out = core_pb2.Pod()
        out.CopyFrom(obj)
        out.metadata.uid = self.uid
        return out


def publisher(client: FakeClient, phase: list[str], settled: list[bool], hold: float) -> StatusPublisher:
    p = pod()
    return StatusPublisher(
        client,  # type: ignore[arg-type]
        lambda: p,
        lambda: core_pb2.PodStatus(phase=phase[0]),
        settled=lambda: settled[0],
        first_write_hold=hold,
    )


async def test_a_quick_start_is_one_write() -> None:
    client, phase, settled = FakeClient(), ["Pending"], [False]
    pub = publisher(client, phase, settled, hold=5.0)
    task = asyncio.create_task(pub.run())
    pub.mark()
    await asyncio.sleep(0.05)
    phase[0], settled[0] = "Running", True
    pub.mark()
    await eventually(lambda: client.writes != [])
    pub.mark()  # nothing changed: no second write
    await asyncio.sleep(0.05)
    assert client.writes == ["Running"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_slow_start_is_reported_after_the_hold() -> None:
    client, phase, settled = FakeClient(), ["Pending"], [False]
    pub = publisher(client, phase, settled, hold=0.2)
    task = asyncio.create_task(pub.run())
    pub.mark()
    await eventually(lambda: client.writes == ["Pending"], timeout=5)
    phase[0] = "Running"
    pub.mark()
    await eventually(lambda: client.writes == ["Pending", "Running"], timeout=5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_replaced_pod_is_not_written_again() -> None:
    client, phase, settled = FakeClient(uid="someone-else"), ["Running"], [True]
    pub = publisher(client, phase, settled, hold=0.0)
    task = asyncio.create_task(pub.run())
    pub.mark()
    async with asyncio.timeout(5):
        await task  # ends after the write came back for another pod
    assert client.writes == ["Running"]
