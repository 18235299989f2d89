"""One etcd watch stream over a key prefix, with progress requests.

We drive the Watch RPC ourselves (rather than through the client library's
iterator) for two things the API server needs: asking etcd for a progress
notification on demand (so the watch cache can prove it is current without
any write), and seeing compaction as an error instead of a silent skip.

::

    EtcdWatch(prefix, start) --stream()--> WatchBatch(revision, events)  ... (progress: no events)
            request_progress() ----------> etcd answers with a progress batch
            compacted start --------------> GoneError (the caller relists)
            stream broken ----------------> UnavailableError (the caller resumes from revision + 1)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import grpc.aio
from etcd3aio._protobuf import WatchCreateRequest, WatchRequest, WatchStub
from etcd3aio._protobuf import rpc_pb2 as etcd_rpc  # type: ignore[attr-defined]

from controlplane.api.errors import GoneError, UnavailableError
from controlplane.storage.keys import prefix_end


@dataclass(frozen=True)
class WatchEvent:
    """One change to one key."""

    deleted: bool
    key: str
    value: bytes
    """The new value (empty for a delete)."""
    revision: int
    """The mod_revision of the change."""
    prev_value: bytes | None
    """The value before the change, when etcd still had it."""
    create_revision: int


@dataclass(frozen=True)
class WatchBatch:
    """The events of one watch response, or a progress notification."""

    revision: int
    """Every change up to this revision has been delivered."""
    events: list[WatchEvent] = field(default_factory=list)

    @property
    def progress(self) -> bool:
        """True for a progress notification (no events)."""
        return not self.events


class EtcdWatch:
    """A watch over ``[prefix, prefix_end)`` starting at ``start_revision``."""

    def __init__(self, channel: grpc.aio.Channel, prefix: str, start_revision: int) -> None:
        self._stub = WatchStub(channel)
        self._prefix = prefix
        self._range_end = prefix_end(prefix)
        self._start = start_revision
        self._requests: asyncio.Queue[WatchRequest | None] = asyncio.Queue()

    def request_progress(self) -> None:
        """Ask etcd for a progress notification (answered as an empty batch)."""
        self._requests.put_nowait(WatchRequest(progress_request=etcd_rpc.WatchProgressRequest()))

    async def _request_stream(self) -> AsyncIterator[WatchRequest]:
        yield WatchRequest(
            create_request=WatchCreateRequest(
                key=self._prefix.encode(), range_end=self._range_end, start_revision=self._start, prev_kv=True
            )
        )
        while True:
            req = await self._requests.get()
            if req is None:
                return
            yield req

    async def stream(self) -> AsyncIterator[WatchBatch]:
        """Yield batches until cancelled; raise ``GoneError`` or ``UnavailableError`` when the watch ends."""
        call = self._stub.Watch(self._request_stream())
        try:
            async for resp in call:
                if resp.compact_revision:
                    raise GoneError(
                        f"etcd compacted revision {resp.compact_revision}; watch from {self._start} is too old"
                    )
                if resp.canceled:
                    raise UnavailableError(f"etcd cancelled the watch on {self._prefix}: {resp.cancel_reason}")
                if resp.created and not resp.events:
                    continue
                events = [
                    WatchEvent(
                        deleted=ev.type == ev.DELETE,
                        key=ev.kv.key.decode(),
                        value=ev.kv.value,
                        revision=int(ev.kv.mod_revision),
                        prev_value=ev.prev_kv.value if ev.HasField("prev_kv") else None,
                        create_revision=int(ev.kv.create_revision),
                    )
                    for ev in resp.events
                ]
                # A batch of events is complete up to its last event only: while etcd
                # catches a watcher up, the header may already name a later revision.
                revision = events[-1].revision if events else int(resp.header.revision)
                yield WatchBatch(revision, events)
            raise UnavailableError(f"the etcd watch stream on {self._prefix} ended")
        except grpc.aio.AioRpcError as err:
            raise UnavailableError(f"the etcd watch stream on {self._prefix} broke: {err.code().name}") from err
        finally:
            self._requests.put_nowait(None)
            call.cancel()
