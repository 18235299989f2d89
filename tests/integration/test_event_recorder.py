"""The event recorder writes Events and aggregates repeats into a count."""

from __future__ import annotations

from controlplane.api.pb import core_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.client.events import NORMAL, WARNING, EventRecorder
from tests.helpers import pod


async def test_repeated_events_are_aggregated_and_distinct_ones_are_not(apiserver: ApiServer, namespace: str) -> None:
    async with ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"])) as client:
        target = await client.create(pod("web", namespace).pod)
        recorder = EventRecorder(client, "navarch-test", "host-1")
        recorder.start()
        for _ in range(3):
            recorder.event(target, WARNING, "BackOff", "Back-off restarting failed container")
        recorder.event(target, NORMAL, "Started", "Started container main")
        await recorder.flush(10)
        await recorder.stop()
        events = (await client.list(core_pb2.Event, namespace, field_selector="involvedObject.name=web")).items
        by_reason = {e.reason: e for e in events}
        assert set(by_reason) == {"BackOff", "Started"}
        backoff = by_reason["BackOff"]
        assert backoff.count == 3 and backoff.type == "Warning"
        assert backoff.involved_object.uid == target.metadata.uid and backoff.source.component == "navarch-test"
        assert backoff.last_timestamp.ToNanoseconds() >= backoff.first_timestamp.ToNanoseconds()
        assert by_reason["Started"].count == 1
