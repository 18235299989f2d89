"""Builds the enabled controllers over shared informers and runs them (only while leading)."""

from __future__ import annotations

import asyncio
import logging

from controlplane.client.client import ApiClient
from controlplane.client.events import EventRecorder
from controlplane.client.informer import InformerFactory
from controlplane.controllers.base import Controller, ControllerContext
from controlplane.controllers.config import ControllerManagerConfig
from controlplane.controllers.registry import CONTROLLERS

log = logging.getLogger(__name__)


class UnknownControllerError(ValueError):
    """``--controllers`` named a controller that does not exist."""


def enabled_controllers(spec: str) -> list[str]:
    """Names from a ``--controllers`` value: ``*`` (all), ``name`` (add), ``-name`` (remove), comma separated."""
    chosen: list[str] = []
    for raw in (s.strip() for s in spec.split(",")):
        if not raw:
            continue
        name = raw.lstrip("-")
        if name != "*" and name not in CONTROLLERS:
            raise UnknownControllerError(f"--controllers: unknown controller {name!r}; known: {', '.join(CONTROLLERS)}")
        names = list(CONTROLLERS) if name == "*" else [name]
        if raw.startswith("-"):
            chosen = [n for n in chosen if n not in names]
        else:
            chosen.extend(n for n in names if n not in chosen)
    return chosen


class ControllerManager:
    """The controllers of one process. ``run`` builds and runs them; cancel it to stop them all."""

    def __init__(
        self, client: ApiClient, config: ControllerManagerConfig, names: list[str], identity: str = ""
    ) -> None:
        self.client = client
        self.config = config
        self.names = names
        self.identity = identity
        self.controllers: list[Controller] = []
        self.started = asyncio.Event()
        """Set once every informer has synced and the controllers run."""

    async def run(self) -> None:
        """Start informers, wait for them, run every controller until cancelled, then clean up."""
        informers = InformerFactory(self.client)
        recorder = EventRecorder(self.client, "navarch-controller-manager", self.identity)
        ctx = ControllerContext(self.client, informers, recorder, self.config)
        self.controllers = [CONTROLLERS[name](ctx) for name in self.names]
        informers.start()
        recorder.start()
        try:
            await informers.wait_for_sync(60.0)
            log.info("controllers running: %s", ", ".join(self.names))
            self.started.set()
            async with asyncio.TaskGroup() as tg:
                for c in self.controllers:
                    tg.create_task(c.run(), name=f"controller-{c.name}")
        finally:
            self.started.clear()
            await informers.stop()
            await recorder.stop(flush_timeout=2.0)
