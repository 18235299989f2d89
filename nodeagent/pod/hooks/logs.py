"""The instance's log file (``<restart count>.log`` in the container's directory, rotated by the shim) and
pruning: the current and the previous instance's logs are kept, for ``logs --previous``."""

from __future__ import annotations

from nodeagent.config import AgentConfig
from nodeagent.logs import instance_log, prune_instances
from nodeagent.pod.hooks import ContainerHook, Instance


class LogsHook(ContainerHook):
    name = "logs"

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    async def prestart(self, inst: Instance) -> None:
        inst.log_path = str(instance_log(inst.state_dir, inst.restart_count))
        inst.log_max_bytes, inst.log_keep = self.config.log_max_bytes, self.config.log_keep
        if not inst.adopted:
            prune_instances(inst.state_dir, keep_from=inst.restart_count - 1)
