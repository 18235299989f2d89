"""The pod's sandbox and volumes: directories made before any container, configMap and secret volumes
prepared (retried with back-off while a referenced object is missing) and refreshed while the pod runs,
everything removed when the pod is deleted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from controlplane.api.errors import ApiError
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from controlplane.client.events import WARNING
from nodeagent.cgroups import CgroupDriver
from nodeagent.sandbox import ConfigError, Sandbox

log = logging.getLogger(__name__)


class PodVolumes:
    """One pod's sandbox and volumes."""

    def __init__(self, client: ApiClient, sandbox: Sandbox, cgroups: CgroupDriver | None, pod_uid: str) -> None:
        self.client = client
        self.sandbox = sandbox
        self.cgroups = cgroups
        self.pod_uid = pod_uid
        self.paths: dict[str, Path] = {}
        """Volume name -> its real directory, once prepared."""

    async def prepare(
        self,
        pod: Callable[[], core_pb2.Pod],
        failed: Callable[[str], None],
        event: Callable[[str, str, str], None],
        backoff: tuple[float, float],
    ) -> None:
        """Make the sandbox and every volume, retrying (``backoff``: initial, cap) until it works."""
        self.sandbox.create()
        delay, cap = backoff
        while True:
            try:
                self.paths = await self.sandbox.prepare_volumes(self.client, pod())
                return
            except ConfigError as err:
                failed(str(err))
                event(WARNING, "FailedMount", str(err))
            except ApiError as err:
                log.warning("pod %s: volumes: %s", pod().metadata.name, err.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)

    async def sync(self, pod: Callable[[], core_pb2.Pod]) -> None:
        """Bring configMap and secret volumes up to date now (a failure keeps the last good content)."""
        try:
            self.paths = await self.sandbox.prepare_volumes(self.client, pod())
        except (ConfigError, ApiError) as err:
            log.warning("pod %s: refreshing volumes: %s", pod().metadata.name, getattr(err, "message", err))

    async def refresh(self, pod: Callable[[], core_pb2.Pod], every: float) -> None:
        """Keep configMap and secret volumes current with their objects (as the kubelet's sync does)."""
        if not any(v.HasField("config_map") or v.HasField("secret") for v in pod().spec.volumes):
            return
        while True:
            await asyncio.sleep(every)
            try:
                await self.sandbox.prepare_volumes(self.client, pod())
            except (ConfigError, ApiError) as err:
                # Keep the last good content; the containers are already running with it.
                log.warning("pod %s: refreshing volumes: %s", pod().metadata.name, getattr(err, "message", err))

    def remove(self) -> None:
        """Delete the sandbox (emptyDirs included) and the pod's cgroups: the pod is gone."""
        self.sandbox.remove()
        if self.cgroups is not None:
            self.cgroups.remove_pod(self.pod_uid)
