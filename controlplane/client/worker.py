"""The worker loop behind every controller: the retry policy lives here, not in ``reconcile``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

from controlplane.api.errors import ConflictError
from controlplane.client.workqueue import WorkQueue

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


async def process_queue(
    queue: WorkQueue[K], reconcile: Callable[[K], Awaitable[None]], *, max_retries: int | None = None
) -> None:
    """Take keys until the queue shuts down: success forgets the key's back-off; failure re-queues it
    rate-limited (dropped after ``max_retries`` failures, if set)."""
    while True:
        key = await queue.get()
        if key is None:
            return
        try:
            await reconcile(key)
        except asyncio.CancelledError:
            queue.done(key)
            raise
        except Exception as err:
            if max_retries is not None and queue.num_requeues(key) >= max_retries:
                log.error("%s: giving up on %s after %d retries: %s", queue.name, key, max_retries, err)
                queue.forget(key)
            else:
                # A conflict is optimistic concurrency at work (the cache lagged a write), not a problem.
                level = logging.DEBUG if isinstance(err, ConflictError) else logging.WARNING
                log.log(
                    level, "%s: reconcile %s failed (retry %d): %s", queue.name, key, queue.num_requeues(key) + 1, err
                )
                queue.add_rate_limited(key)
        else:
            queue.forget(key)
        queue.done(key)


async def run_workers(queue: WorkQueue[K], reconcile: Callable[[K], Awaitable[None]], *, workers: int = 2) -> None:
    """Run ``workers`` concurrent worker loops until the queue shuts down."""
    async with asyncio.TaskGroup() as tg:
        for i in range(workers):
            tg.create_task(process_queue(queue, reconcile), name=f"{queue.name or 'queue'}-worker-{i}")
