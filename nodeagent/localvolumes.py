"""Node-local persistent volumes: one directory per PersistentVolume under ``<data-dir>/local-volumes/``.

A pod's ``persistentVolumeClaim`` volume resolves, through the API, to its bound PersistentVolume; the agent
uses it only if the volume's node affinity names this node (data never silently appears empty elsewhere),
and its ``spec.local.path`` is one plain directory name (validated by the API server and again here), so no
PersistentVolume can point the agent outside its volume root. The directory is made on first use and outlives
every pod (that is the point); :meth:`LocalVolumes.collect` removes the directories whose PersistentVolume is
gone (deleted after its claim was, under the ``Delete`` reclaim policy), without following any link a
workload may have left inside.

The root is the agent's own (mode 0711: workloads reach their volume by its path but cannot list the others).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from controlplane.api.errors import ApiError, NotFoundError
from controlplane.api.pb import core_pb2
from controlplane.api.volumes import affinity_names
from controlplane.client.client import ApiClient
from nodeagent import safefs
from nodeagent.sandbox import ConfigError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class LocalVolumes:
    """This node's local volume directories."""

    def __init__(self, root: Path, node_name: str) -> None:
        self.root = root
        self.node_name = node_name

    def ensure_root(self) -> None:
        """Make the root (the agent's, 0711)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)

    async def claim_dir(self, client: ApiClient, namespace: str, claim: str, volume: str) -> Path:
        """The directory of the volume bound to ``claim``; ``ConfigError`` saying why when it cannot be used."""
        try:
            pvc = await client.get(core_pb2.PersistentVolumeClaim, claim, namespace)
        except NotFoundError:
            raise ConfigError(f'volume "{volume}": persistentvolumeclaim "{claim}" not found') from None
        if not pvc.spec.volume_name or pvc.status.phase != "Bound":
            raise ConfigError(f'volume "{volume}": persistentvolumeclaim "{claim}" is not bound yet')
        try:
            pv = await client.get(core_pb2.PersistentVolume, pvc.spec.volume_name)
        except NotFoundError:
            raise ConfigError(
                f'volume "{volume}": persistentvolume "{pvc.spec.volume_name}" of claim "{claim}" not found'
            ) from None
        if pv.spec.claim_ref.uid and pv.spec.claim_ref.uid != pvc.metadata.uid:
            raise ConfigError(f'volume "{volume}": persistentvolume "{pv.metadata.name}" is bound to another claim')
        if not affinity_names(pv, self.node_name):
            raise ConfigError(
                f'volume "{volume}": persistentvolume "{pv.metadata.name}" is held by another node, not '
                f"{self.node_name}"
            )
        name = pv.spec.local.path
        if not _NAME.match(name) or ".." in name:
            raise ConfigError(f'volume "{volume}": persistentvolume "{pv.metadata.name}" has an unusable local path')
        self.ensure_root()
        with safefs.opened_dir(str(self.root)) as root_fd:
            os.close(safefs.ensure_dir(root_fd, name, 0o755))
        return self.root / name

    async def collect(self, client: ApiClient) -> list[str]:
        """Remove the directories whose PersistentVolume no longer exists; returns their names."""
        if not self.root.is_dir():
            return []
        removed: list[str] = []
        for entry in os.scandir(self.root):
            if not _NAME.match(entry.name):
                continue
            try:
                pv = await client.get(core_pb2.PersistentVolume, entry.name)
            except NotFoundError:
                pv = None
            except ApiError as err:
                log.warning("local volumes: cannot check %s: %s", entry.name, err.message)
                continue
            if pv is not None and affinity_names(pv, self.node_name):
                continue
            if pv is not None:
                continue  # another node's volume of that name: not ours to judge
            # rmtree works on directory descriptors here (shutil.rmtree.avoids_symlink_attacks on Linux):
            # a link the workload left inside is removed, never followed.
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
            log.info("local volume %s removed: its PersistentVolume is gone", entry.name)
        return removed
