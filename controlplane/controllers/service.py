"""The ``navarch.v1.ControllerManager`` gRPC service: who leads, and each controller's queue and counts."""

from __future__ import annotations

from collections.abc import Callable

import grpc.aio

from controlplane.api.pb import controllermanager_pb2, controllermanager_pb2_grpc
from controlplane.controllers.manager import ControllerManager


class ControllerManagerService(controllermanager_pb2_grpc.ControllerManagerServicer):
    """Answers for one controller-manager replica (leader or standby)."""

    def __init__(self, manager: ControllerManager, leader: Callable[[], tuple[str, bool]]) -> None:
        self.manager = manager
        self._leader = leader

    async def Status(
        self, request: controllermanager_pb2.ControllerManagerStatusRequest, context: grpc.aio.ServicerContext
    ) -> controllermanager_pb2.ControllerManagerStatus:
        leader, leading = self._leader()
        out = controllermanager_pb2.ControllerManagerStatus(
            identity=self.manager.identity, leader=leader, leading=leading
        )
        running = {c.name: c for c in self.manager.controllers}
        for name in self.manager.names:
            c = running.get(name)
            if c is None:
                out.controllers.add(name=name)
                continue
            out.controllers.add(
                name=name,
                queue_depth=len(c.queue),
                delayed=c.queue.delayed(),
                syncs=c.syncs,
                errors=c.errors,
                workers=c.workers,
                last_error=c.last_error,
            )
        return out
