"""``lifecycle.preStop``: exec, httpGet or tcpSocket, run before SIGTERM within the grace period."""

from __future__ import annotations

import asyncio

from controlplane.api.pb import core_pb2
from controlplane.client.events import WARNING
from nodeagent.pod.hooks import ContainerHook, Instance
from nodeagent.probes import check


class LifecycleHook(ContainerHook):
    name = "lifecycle"

    def __init__(self, node_ip: str) -> None:
        self.node_ip = node_ip

    async def prekill(self, inst: Instance, deadline: float) -> None:
        lifecycle = inst.container.lifecycle
        if not lifecycle.HasField("pre_stop"):
            return
        hook = lifecycle.pre_stop
        probe = core_pb2.Probe()
        for field in ("exec", "http_get", "tcp_socket"):
            if hook.HasField(field):
                getattr(probe, field).CopyFrom(getattr(hook, field))
        probe.timeout_seconds = max(1, int(deadline - asyncio.get_running_loop().time()))
        ok, message = await check(
            probe,
            host=self.node_ip,
            ports=inst.ports,
            env=inst.env,
            cwd=inst.cwd,
            run_as=inst.run_as,
            cgroups=inst.cgroup_procs,
        )
        if not ok:
            inst.events.event(WARNING, "FailedPreStopHook", f"PreStopHook failed: {message}")
