"""Liveness, readiness and startup probes while the workload runs (not for init containers).

A startup probe holds the other two off until it succeeds; its failure, or a liveness failure, asks the
runner to stop the instance gracefully (the restart policy decides what follows). Readiness and startup
results go to the runner, which derives the container's ``started`` and ``ready``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from controlplane.api.pb import core_pb2
from controlplane.client.events import NORMAL, WARNING
from nodeagent.pod.hooks import ContainerHook, Instance
from nodeagent.probes import ProbeRunner


class ProbesHook(ContainerHook):
    name = "probes"

    def __init__(self, node_ip: str) -> None:
        self.node_ip = node_ip  # the pod's IP, as Kubernetes probes it
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}

    async def poststart(self, inst: Instance) -> None:
        if inst.init:
            return
        c = inst.container
        tasks = self._tasks.setdefault(inst.name, [])
        has_startup = c.HasField("startup_probe")
        inst.events.probe_changed("startup", not has_startup)
        inst.events.probe_changed("readiness", not c.HasField("readiness_probe"))

        def runner(
            kind: str,
            probe: core_pb2.Probe,
            on_change: Callable[[bool, str], None],
            *,
            initial: bool,
            fail_before_success: bool = False,
        ) -> None:
            r = ProbeRunner(
                kind,
                probe,
                on_change,
                host=self.node_ip,
                ports=inst.ports,
                env=inst.env,
                cwd=inst.cwd,
                initial=initial,
                fail_before_success=fail_before_success,
                run_as=inst.run_as,
                cgroups=inst.cgroup_procs,
            )
            tasks.append(asyncio.create_task(r.run(), name=f"{kind}-{c.name}"))

        def liveness_and_readiness() -> None:
            if c.HasField("liveness_probe"):

                def on_liveness(ok: bool, message: str) -> None:
                    if not ok:
                        inst.events.event(WARNING, "Unhealthy", f"Liveness probe failed: {message}")
                        inst.events.event(
                            NORMAL, "Killing", f"Container {c.name} failed liveness probe, will be restarted"
                        )
                        inst.events.restart()

                runner("liveness", c.liveness_probe, on_liveness, initial=True)
            if c.HasField("readiness_probe"):

                def on_readiness(ok: bool, message: str) -> None:
                    if not ok:
                        inst.events.event(WARNING, "Unhealthy", f"Readiness probe failed: {message}")
                    inst.events.probe_changed("readiness", ok)

                runner("readiness", c.readiness_probe, on_readiness, initial=False)

        if has_startup:

            def on_startup(ok: bool, message: str) -> None:
                if ok:
                    inst.events.probe_changed("startup", True)
                    liveness_and_readiness()
                else:
                    inst.events.event(WARNING, "Unhealthy", f"Startup probe failed: {message}")
                    inst.events.restart()

            runner("startup", c.startup_probe, on_startup, initial=False, fail_before_success=True)
        else:
            liveness_and_readiness()

    async def stop(self, inst: Instance) -> None:
        tasks = self._tasks.pop(inst.name, [])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
