"""The container's environment, command line, working directory and named ports.

``env`` literals and ``valueFrom`` (ConfigMaps, Secrets, fieldRefs), the Services' variables, one
``NAVARCH_VOLUME_<NAME>`` per mount (and the mountPath links under ``work/``), ``NAVARCH_SANDBOX``,
``PORT_<NAME>`` per named port; ``$(VAR)`` expanded in the command. ``containerPort: 0`` gets a host port
from the agent's dynamic range, chosen once per pod and port and kept in the pod's record, so a restarted
instance (and a restarted agent) keeps it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from nodeagent.pod.context import AgentContext, PortsExhaustedError
from nodeagent.pod.hooks import ContainerHook, Instance
from nodeagent.sandbox import ConfigError, Sandbox, container_env, env_name, expand, service_env


class EnvironmentHook(ContainerHook):
    name = "environment"

    def __init__(
        self,
        ctx: AgentContext,
        sandbox: Sandbox,
        volumes: Callable[[], dict[str, Path]],
        pod_ports: dict[str, int],
    ) -> None:
        self.ctx = ctx
        self.sandbox = sandbox
        self.volumes = volumes
        self.pod_ports = pod_ports
        """Host ports chosen for containerPort 0, by ``<container>/<port name>`` (the pod record's, persisted)."""

    async def prestart(self, inst: Instance) -> None:
        c, pod = inst.container, inst.pod
        extra = self.sandbox.link_mounts(c, self.volumes())
        inst.allocated = {}
        for port in c.ports:
            if port.container_port == 0 and port.name:
                key = f"{c.name}/{port.name}"
                if key not in self.pod_ports:
                    try:
                        self.pod_ports[key] = self.ctx.ports.allocate()
                    except PortsExhaustedError as err:
                        raise ConfigError(f"port {port.name!r}: {err}") from None
                inst.allocated[port.name] = self.pod_ports[key]
        inst.ports = {p.name: inst.allocated.get(p.name) or p.container_port for p in c.ports if p.name}
        for name, number in inst.ports.items():
            extra[f"PORT_{env_name(name)}"] = str(number)
        extra["NAVARCH_SANDBOX"] = str(self.sandbox.root)
        if pod.spec.enable_service_links:
            extra = {**service_env(self.ctx.services(pod.metadata.namespace)), **extra}
        cfg = self.ctx.config
        inst.env = await container_env(
            self.ctx.client, pod, c, node_name=cfg.node_name, node_ip=cfg.node_ip, extra=extra
        )
        inst.cwd = c.working_dir or str(self.sandbox.work)
        if c.working_dir:
            with contextlib.suppress(OSError):  # the shim reports an unusable directory precisely
                Path(c.working_dir).mkdir(parents=True, exist_ok=True)
        inst.argv = [expand(a, inst.env) for a in [*c.command, *c.args]]
