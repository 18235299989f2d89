"""The ``navarch.v1.Scheduler`` gRPC service: Status, and Explain (a dry run over every node)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import grpc.aio

from controlplane.api.errors import ApiError, InvalidError
from controlplane.api.pb import core_pb2, scheduler_pb2, scheduler_pb2_grpc
from controlplane.scheduler.scheduler import Scheduler


class SchedulerService(scheduler_pb2_grpc.SchedulerServicer):
    """Answers for one scheduler replica (leader or standby)."""

    def __init__(self, scheduler: Scheduler, leader: Callable[[], tuple[str, bool]]) -> None:
        self.scheduler = scheduler
        self._leader = leader

    async def Status(
        self, request: scheduler_pb2.SchedulerStatusRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.SchedulerStatus:
        s = self.scheduler
        active, backoff, parked = s.queue.lengths()
        leader, leading = self._leader()
        return scheduler_pb2.SchedulerStatus(
            identity=s.identity,
            leader=leader,
            leading=leading,
            active=active,
            backoff=backoff,
            unschedulable=parked,
            attempts_per_second=s.attempts.per_second(),
            bindings_per_second=s.bindings.per_second(),
            attempts_total=s.attempts.total,
            bindings_total=s.bindings.total,
            nodes=len(s.cache.nodes),
            scheduler_name=s.config.scheduler_name,
        )

    async def Explain(
        self, request: scheduler_pb2.ExplainRequest, context: grpc.aio.ServicerContext
    ) -> scheduler_pb2.ExplainResponse:
        try:
            pod = await self._pod(request)
        except ApiError as err:
            await context.abort(err.code, err.message)
        s = self.scheduler
        decision = s.algorithm.explain(s.cache.snapshot(), pod)
        response = scheduler_pb2.ExplainResponse(selected=decision.node or "")
        if decision.node is None:
            response.message = decision.message(len(s.cache.nodes))
        for v in decision.verdicts:
            response.nodes.add(
                node=v.node,
                feasible=v.status.ok,
                filter=v.filter,
                reasons=list(v.status.reasons),
                score=v.total,
                scores=v.scores,
            )
        return response

    async def _pod(self, request: scheduler_pb2.ExplainRequest) -> core_pb2.Pod:
        if request.HasField("pod"):
            pod = core_pb2.Pod()
            pod.CopyFrom(request.pod)
            pod.metadata.namespace = pod.metadata.namespace or "default"
            pod.spec.node_name = ""
            return pod
        if not request.name:
            raise InvalidError("give a pod by name or inline", field="name")
        pod = await self.scheduler.client.get(core_pb2.Pod, request.name, request.namespace or "default")
        # Explained as if unscheduled; a pod that is already bound also still counts on its own node.
        explained = core_pb2.Pod()
        explained.CopyFrom(pod)
        explained.spec.node_name = ""
        return explained
