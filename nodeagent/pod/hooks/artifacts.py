"""``artifacts``: files fetched by URL (through the node's ``ArtifactCache``) placed in the pod's work directory
before the container starts.

A file is placed at ``path`` (default: the URL's file name); an archive is unpacked into ``path`` (default:
the work directory). Placement never copies unless it must: a file or an unpacked tree's files are hard
links of the cache's read-only inodes (so a program of 100 MB shared by ten pods is on disk once); a file
whose ``mode`` has write bits, or a cache on another filesystem, gets a copy owned by the pod's user. Every
step inside the work directory (the workload's own) goes through directory descriptors with links replaced,
never followed (``nodeagent.safefs``). An adopted instance (agent restart) is left alone: its process already
runs with its files. Fetching is reported as Events (``FetchingArtifact``, ``FetchedArtifact``,
``FailedArtifact``); a failure is a ``ConfigError`` (CreateContainerConfigError, retried with back-off).
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

from controlplane.api.artifactnames import artifact_file_name
from controlplane.api.pb import core_pb2
from controlplane.client.events import NORMAL, WARNING
from nodeagent import safefs
from nodeagent.artifacts import ArtifactCache, ArtifactError, Fetched, wants_extract
from nodeagent.pod.hooks import ContainerHook, Instance
from nodeagent.sandbox import ConfigError, Sandbox


class ArtifactsHook(ContainerHook):
    name = "artifacts"

    def __init__(self, cache: ArtifactCache | None, sandbox: Sandbox) -> None:
        self.cache = cache
        self.sandbox = sandbox

    async def prestart(self, inst: Instance) -> None:
        artifacts = inst.container.artifacts
        if not artifacts or inst.adopted:
            return
        if self.cache is None:
            raise ConfigError("artifacts: this agent has no artifact cache")
        owner = (
            inst.run_as.uid if inst.run_as.uid is not None else os.geteuid(),
            inst.run_as.gid if inst.run_as.gid is not None else os.getegid(),
        )
        for artifact in artifacts:
            try:
                fetched = await self.cache.get(
                    artifact, lambda text: inst.events.event(NORMAL, "FetchingArtifact", text)
                )
                await asyncio.to_thread(place, fetched, artifact, self.sandbox.work, owner)
            except (ArtifactError, OSError) as err:
                message = str(err) if isinstance(err, ArtifactError) else f"{artifact.url}: cannot place it: {err}"
                inst.events.event(WARNING, "FailedArtifact", message)
                raise ConfigError(f"artifact {message}") from None
            if not fetched.cached:
                inst.events.event(
                    NORMAL,
                    "FetchedArtifact",
                    f"Fetched artifact {artifact.url} ({fetched.size} bytes, sha256 verified) "
                    f"in {fetched.seconds:.1f}s",
                )


def place(fetched: Fetched, artifact: core_pb2.Artifact, work: Path, owner: tuple[int, int]) -> None:
    """Put a fetched artifact where it belongs under ``work`` (see the module's rules)."""
    extract = wants_extract(artifact)
    rel = artifact.path or ("" if extract else artifact_file_name(artifact.url))
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or (not extract and not parts):
        raise ArtifactError(f"{artifact.url}: path {rel!r} is not a file inside the work directory")
    with safefs.opened_dir(str(work)) as root:
        if extract:
            fd = safefs.walk_to(root, parts, owner)
            try:
                _place_tree(str(fetched.path), fd, owner)
            finally:
                os.close(fd)
            return
        fd = safefs.walk_to(root, parts[:-1], owner)
        try:
            mode = artifact.mode if artifact.HasField("mode") else 0o555
            _place_file(str(fetched.path), fd, parts[-1], mode, owner, copy=bool(mode & 0o222))
        finally:
            os.close(fd)


def _place_file(src: str, dir_fd: int, name: str, mode: int, owner: tuple[int, int], *, copy: bool) -> None:
    if not copy:
        try:
            safefs.link_into(src, dir_fd, name)
            return
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
    safefs.copy_into(src, dir_fd, name, mode, owner)


def _place_tree(src: str, dir_fd: int, owner: tuple[int, int]) -> None:
    for entry in os.scandir(src):
        if entry.is_symlink():
            safefs.symlink_into(os.readlink(entry.path), dir_fd, entry.name)
        elif entry.is_dir(follow_symlinks=False):
            sub = safefs.walk_to(dir_fd, [entry.name], owner)
            try:
                _place_tree(entry.path, sub, owner)
            finally:
                os.close(sub)
        elif entry.is_file(follow_symlinks=False):
            mode = entry.stat(follow_symlinks=False).st_mode & 0o777
            _place_file(entry.path, dir_fd, entry.name, mode, owner, copy=False)
