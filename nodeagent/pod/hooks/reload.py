"""``reloadPolicy`` Signal and Restart: act on a running container when a ConfigMap or Secret it references
changes (Kubernetes has no such thing, kubernetes#22368; Nomad's ``change_mode``).

While the instance runs, the referenced objects' versions are read every ``interval`` (the volume refresh
period). On a change the pod's volumes are brought up to date first, so the process finds the new content,
then: Signal sends the policy's signal to the container's process group (the instance keeps running; the
new version becomes the one to compare with); Restart asks the runner to restart the container at once, with
no back-off and whatever the restart policy, so the new instance gets new environment values too. Rollout
is the controller manager's (the Deployment rolls); the agent leaves it alone. The versions an instance is
compared with are read when it starts, so a change made while it was starting is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message

from controlplane.api.configrefs import ConfigRef, config_references, fingerprint
from controlplane.api.errors import ApiError, NotFoundError
from controlplane.client.client import ApiClient
from controlplane.client.events import NORMAL
from nodeagent.pod.hooks import ContainerHook, Instance

log = logging.getLogger(__name__)


class ReloadHook(ContainerHook):
    name = "reload"

    def __init__(self, client: ApiClient, interval: float, refresh_volumes: Callable[[], Awaitable[None]]) -> None:
        self.client = client
        self.interval = interval
        self.refresh_volumes = refresh_volumes
        self._baseline: dict[str, str] = {}
        self._watching: dict[str, asyncio.Task[None]] = {}

    @staticmethod
    def _refs(inst: Instance) -> list[ConfigRef]:
        policy = inst.container.reload_policy
        if inst.init or policy.mode not in ("Signal", "Restart"):
            return []
        return config_references(inst.pod.spec, inst.container)

    async def _fingerprint(self, namespace: str, refs: list[ConfigRef]) -> str:
        found: dict[ConfigRef, Message | None] = {}
        for ref in refs:
            try:
                found[ref] = await self.client.get_by_name(ref.kind, ref.name, namespace)
            except NotFoundError:
                found[ref] = None
        return fingerprint(found)

    async def prestart(self, inst: Instance) -> None:
        refs = self._refs(inst)
        if refs:
            with contextlib.suppress(ApiError):  # unreadable now: the first read while it runs is the baseline
                self._baseline[inst.name] = await self._fingerprint(inst.pod.metadata.namespace, refs)

    async def poststart(self, inst: Instance) -> None:
        refs = self._refs(inst)
        if refs:
            task = asyncio.create_task(self._watch(inst, refs), name=f"reload-{inst.name}")
            self._watching[inst.name] = task

    async def stop(self, inst: Instance) -> None:
        task = self._watching.pop(inst.name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _watch(self, inst: Instance, refs: list[ConfigRef]) -> None:
        policy = inst.container.reload_policy
        namespace = inst.pod.metadata.namespace
        names = ", ".join(f"{r.kind.lower()}/{r.name}" for r in refs)
        while True:
            await asyncio.sleep(self.interval)
            try:
                now = await self._fingerprint(namespace, refs)
            except ApiError as err:
                log.warning("pod %s: reload check of %s: %s", inst.pod.metadata.name, names, err.message)
                continue
            before = self._baseline.setdefault(inst.name, now)
            if now == before:
                continue
            await self.refresh_volumes()  # the new content is in place before the process is told
            self._baseline[inst.name] = now
            if policy.mode == "Signal":
                sig = policy.signal or "SIGHUP"
                if inst.process is not None:
                    inst.process.signal_group(signal.Signals[sig])
                inst.events.event(NORMAL, "Reloaded", f"Configuration changed ({names}): sent {sig} to {inst.name}")
                continue
            inst.events.event(NORMAL, "Restarting", f"Configuration changed ({names}): restarting {inst.name}")
            inst.events.reload()
            return
