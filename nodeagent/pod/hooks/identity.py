"""Who the container's processes run as (nodeagent/identity.py decides), and the pod's directories given to
that user before a new process starts."""

from __future__ import annotations

from nodeagent import identity
from nodeagent.config import AgentConfig
from nodeagent.pod.hooks import ContainerHook, Instance
from nodeagent.sandbox import Sandbox


class IdentityHook(ContainerHook):
    name = "identity"

    def __init__(self, config: AgentConfig, sandbox: Sandbox) -> None:
        self.config = config
        self.sandbox = sandbox

    async def prestart(self, inst: Instance) -> None:
        inst.run_as = identity.resolve(
            inst.pod,
            inst.container,
            default_uid=self.config.run_as_user,
            default_gid=self.config.run_as_group,
            refuse_root=self.config.refuse_root,
        )
        if not inst.adopted:
            identity.give_to(str(self.sandbox.work), inst.run_as)
            identity.give_to(str(self.sandbox.volumes), inst.run_as)
