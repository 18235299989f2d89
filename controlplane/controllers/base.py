"""What every controller is: a ``reconcile(key)`` fed by shared informers through a rate-limited queue.

::

    informer event ──handler: compute key──> WorkQueue ──worker──> reconcile(key)
                                               ^                      │ error: add_rate_limited(key)
                                               └──────────────────────┘ "come back later": add_after(key, s)

Handlers only compute keys. ``reconcile`` reads caches, treats a missing object as clean-up, copies a
cached object before changing it, makes one step towards the desired state and recomputes status; it is
idempotent, so killing the process at any point and running it again converges to the same state.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, TypeVar

from google.protobuf.message import Message

from controlplane.api.errors import ApiError
from controlplane.client.client import ApiClient
from controlplane.client.events import EventRecorder
from controlplane.client.indexer import object_key
from controlplane.client.informer import InformerFactory
from controlplane.client.worker import process_queue
from controlplane.client.workqueue import WorkQueue
from controlplane.controllers.config import ControllerManagerConfig

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


@dataclass
class ControllerContext:
    """What controllers share: one API client, one informer per kind, one event recorder."""

    client: ApiClient
    informers: InformerFactory
    recorder: EventRecorder
    config: ControllerManagerConfig = field(default_factory=ControllerManagerConfig)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    """Wall-clock time, for timestamps written into objects and compared with them."""
    monotonic: Callable[[], float] = field(default=time.monotonic)
    """Local elapsed time, for what this process observed itself (Lease renewals)."""


def copy(obj: M) -> M:
    """A private copy of a cached object (cached objects are shared and must never be changed)."""
    out = type(obj)()
    out.CopyFrom(obj)
    return out


class Controller(abc.ABC):
    """One controller: a queue of keys, workers, and ``reconcile``. Subclasses register informer
    handlers in ``__init__`` and implement ``reconcile``."""

    name: ClassVar[str]
    """The name used by ``--controllers`` and ``--concurrent-<name>-syncs``."""
    default_workers: ClassVar[int] = 2

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.config = ctx.config
        self.queue: WorkQueue[str] = WorkQueue(self.name)
        self.workers = ctx.config.concurrent_syncs.get(self.name, self.default_workers)
        self.syncs = 0
        self.errors = 0
        self.last_error = ""

    @abc.abstractmethod
    async def reconcile(self, key: str) -> None:
        """Make one step from the observed towards the desired state of the object named by ``key``."""

    def enqueue(self, obj: Message) -> None:
        """Queue the object's ``namespace/name``."""
        self.queue.add(object_key(obj))

    async def background(self) -> None:  # noqa: B027 - optional hook
        """Periodic work besides the queue (e.g. health checks); runs while the controller runs."""

    async def _reconcile_counted(self, key: str) -> None:
        self.syncs += 1
        try:
            await self.reconcile(key)
        except ApiError as err:
            self.errors += 1
            self.last_error = f"{key}: {err.message}"
            raise
        except Exception as err:
            self.errors += 1
            self.last_error = f"{key}: {err!r}"
            log.exception("%s: reconcile %s crashed", self.name, key)
            raise
        else:
            self.last_error = ""

    async def run(self) -> None:
        """Reconcile until cancelled (informers must be started by the owner)."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.background(), name=f"{self.name}-background")
                for i in range(self.workers):
                    tg.create_task(process_queue(self.queue, self._reconcile_counted), name=f"{self.name}-worker-{i}")
        finally:
            self.queue.shutdown()
