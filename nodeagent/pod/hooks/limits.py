"""Resource limits: a cgroup per container instance (memory, CPU quota and weight), or an address-space
rlimit where no cgroup hierarchy is writable; OOM kills reported as ``OOMKilled``."""

from __future__ import annotations

import dataclasses
import logging

from controlplane.api.pb import core_pb2
from controlplane.api.quantity import parse_quantity
from nodeagent.cgroups import CgroupDriver, Limits
from nodeagent.pod.hooks import ContainerHook, Instance
from nodeagent.shimspec import Termination

log = logging.getLogger(__name__)


def container_limits(c: core_pb2.Container) -> Limits:
    """The container's limits and CPU request, in the cgroup driver's units."""
    memory = c.resources.limits.get("memory")
    cpu = c.resources.limits.get("cpu")
    cpu_request = c.resources.requests.get("cpu")
    return Limits(
        memory_bytes=int(parse_quantity(memory)) if memory else 0,
        cpu_millicores=int(parse_quantity(cpu) * 1000) if cpu else 0,
        cpu_request_millicores=int(parse_quantity(cpu_request) * 1000) if cpu_request else 0,
    )


class LimitsHook(ContainerHook):
    name = "limits"

    def __init__(self, cgroups: CgroupDriver | None, pod_uid: str, *, observe: bool = False) -> None:
        self.cgroups = cgroups
        self.pod_uid = pod_uid
        self.observe = observe
        """Enforce nothing (groups still made, for accounting); ``nodeagent.limitsobserver`` reports overruns."""
        self.fell_back = False
        """A cgroup could not be made, so limits fell back to the rlimit."""

    async def prestart(self, inst: Instance) -> None:
        if inst.adopted:
            # Its process already joined its groups; probes, hooks and exec join them too.
            if self.cgroups is not None:
                inst.cgroup_procs = self.cgroups.procs_files(self.pod_uid, inst.name, inst.restart_count)
            return
        limits = Limits() if self.observe else container_limits(inst.container)
        if self.cgroups is not None:
            try:
                inst.cgroup_procs = self.cgroups.create(self.pod_uid, inst.name, inst.restart_count, limits)
                return
            except OSError as err:
                log.warning(
                    "pod %s: cgroups for %s: %s; falling back to rlimit", inst.pod.metadata.name, inst.name, err
                )
                self.fell_back = True
        # setrlimit is the fallback: address space is a loose proxy for memory, so allow headroom.
        inst.rlimit_as = limits.memory_bytes * 2  # 0 (none) when observing

    def exited(self, inst: Instance, termination: Termination) -> Termination:
        if self.cgroups is None:
            return termination
        if termination.started and self.cgroups.oom_killed(self.pod_uid, inst.name, inst.restart_count):
            termination = dataclasses.replace(termination, reason="OOMKilled")
        # The instance is over: whatever it left running (daemonised out of its process group) goes too.
        self.cgroups.kill_instance(self.pod_uid, inst.name, inst.restart_count)
        self.cgroups.remove_instance(self.pod_uid, inst.name, inst.restart_count)
        return termination

    def enforcement(self, pod: core_pb2.Pod) -> str:
        """The resource enforcement the pod gets, as reported in its status."""
        containers = [*pod.spec.init_containers, *pod.spec.containers]
        has_memory = any("memory" in c.resources.limits for c in containers)
        has_any = has_memory or any("cpu" in c.resources.limits for c in containers)
        if not has_any:
            return "none"
        if self.observe:
            return "observe"
        if self.cgroups is not None and not self.fell_back:
            return self.cgroups.name
        return "rlimit" if has_memory else "none"
