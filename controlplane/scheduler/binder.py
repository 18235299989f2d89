"""The scheduler's bindings, written in batches: one ``BindPods`` call carries every binding decided meanwhile.

Guarantees:

- A submitted binding is sent in exactly one request, in submission order, with at most ``batch_size``
  bindings per request and at most ``concurrency`` requests in flight; nothing waits for company, so a lone
  binding is sent at once (batches form because decisions come faster than requests finish).
- Every submitted binding gets exactly one call of ``on_result``: the server's result, or, when the whole
  request failed, an ``ApiError``-derived result with that error's code.
- ``run`` owns the request tasks: cancelling it cancels them; their bindings get no result (the scheduler
  stops leading and forgets its assumptions anyway).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from controlplane.api.errors import ApiError
from controlplane.api.pb import api_pb2
from controlplane.client.client import ApiClient

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class PendingBinding(Generic[T]):
    """One decision waiting to be written, with the caller's token (its queued pod)."""

    token: T
    binding: api_pb2.PodBinding


class BatchBinder(Generic[T]):
    """Writes bindings through ``ApiClient.bind_pods`` in batches; see the module's guarantees."""

    def __init__(
        self,
        client: ApiClient,
        on_result: Callable[[T, api_pb2.PodBinding, api_pb2.BindingResult], None],
        *,
        batch_size: int = 100,
        concurrency: int = 4,
        timeout: float = 5.0,
    ) -> None:
        self.client = client
        self.on_result = on_result
        self.batch_size = max(1, batch_size)
        self.timeout = timeout
        self.requests = 0
        """Requests sent (a batch is one request)."""
        self._pending: list[PendingBinding[T]] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._inflight: set[asyncio.Task[None]] = set()

    def submit(self, token: T, binding: api_pb2.PodBinding) -> None:
        """Queue one binding (never blocks)."""
        self._pending.append(PendingBinding(token, binding))
        self._wake.set()

    @property
    def pending(self) -> int:
        """Bindings submitted and not yet sent."""
        return len(self._pending)

    async def run(self) -> None:
        """Send batches until cancelled."""
        try:
            while True:
                await self._wake.wait()
                await self._slots.acquire()
                batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
                if not self._pending:
                    self._wake.clear()
                if not batch:
                    self._slots.release()
                    continue
                task = asyncio.create_task(self._send(batch), name=f"bind-batch-{self.requests}")
                self.requests += 1
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
        finally:
            for task in list(self._inflight):
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _send(self, batch: list[PendingBinding[T]]) -> None:
        results: list[api_pb2.BindingResult]
        try:
            try:
                results = await self.client.bind_pods([p.binding for p in batch], timeout=self.timeout)
            except ApiError as err:
                log.warning("binding %d pods failed: %s", len(batch), err.message)
                results = [
                    api_pb2.BindingResult(
                        namespace=p.binding.namespace, name=p.binding.name, code=err.code.name, message=err.message
                    )
                    for p in batch
                ]
            if len(results) != len(batch):  # a server that breaks the contract: treat every binding as failed
                results = [
                    api_pb2.BindingResult(code="INTERNAL", message=f"{len(results)} results for {len(batch)} bindings")
                    for _ in batch
                ]
            for pending, result in zip(batch, results, strict=True):
                try:
                    self.on_result(pending.token, pending.binding, result)
                except Exception:
                    log.exception("binding result handler failed for %s", pending.binding.name)
        finally:
            self._slots.release()
