"""Who the container's processes run as (nodeagent/identity.py decides), and the pod's directories given to
that user before a new process starts."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from nodeagent import identity
from nodeagent.config import AgentConfig
from nodeagent.localvolumes import LocalVolumes
from nodeagent.pod.hooks import ContainerHook, Instance
from nodeagent.sandbox import Sandbox


class IdentityHook(ContainerHook):
    name = "identity"

    def __init__(
        self,
        config: AgentConfig,
        sandbox: Sandbox,
        volumes: Callable[[], dict[str, Path]] | None = None,
        local: LocalVolumes | None = None,
    ) -> None:
        self.config = config
        self.sandbox = sandbox
        self.volumes = volumes
        self.local = local

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
            self._give_local_volumes(inst)

    def _give_local_volumes(self, inst: Instance) -> None:
        """A persistent volume's own directory (not what is in it: that is the data of earlier pods, which
        keep their owners) becomes the workload's, so a new volume is writable by an unprivileged pod."""
        if self.local is None or self.volumes is None or inst.run_as.uid is None:
            return
        gid = inst.run_as.gid if inst.run_as.gid is not None else -1
        for path in self.volumes().values():
            if path.parent == self.local.root:
                os.chown(path, inst.run_as.uid, gid, follow_symlinks=False)
