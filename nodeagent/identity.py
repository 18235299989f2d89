"""Which user and group a container's processes run as.

``securityContext.runAsUser/runAsGroup`` of the container, else of the pod; when neither says and the agent
runs as root, the agent's ``--run-as-user/--run-as-group`` (default 65534, "nobody"): an agent that is root
never hands root to a workload by accident. ``runAsNonRoot`` and the agent's ``--refuse-root-workloads`` fail a
container that would run as uid 0.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from controlplane.api.pb import core_pb2
from nodeagent.sandbox import ConfigError


@dataclass(frozen=True)
class RunAs:
    """A resolved identity; None fields mean "as the agent"."""

    uid: int | None
    gid: int | None
    groups: tuple[int, ...] = ()


def resolve(
    pod: core_pb2.Pod,
    container: core_pb2.Container,
    *,
    default_uid: int | None,
    default_gid: int | None,
    refuse_root: bool,
    agent_uid: int | None = None,
) -> RunAs:
    """The identity of ``container``; ``ConfigError`` naming the field when it may not run."""
    agent = os.geteuid() if agent_uid is None else agent_uid
    csc, psc = container.security_context, pod.spec.security_context
    uid: int | None = None
    gid: int | None = None
    if csc.HasField("run_as_user"):
        uid = csc.run_as_user
    elif psc.HasField("run_as_user"):
        uid = psc.run_as_user
    if csc.HasField("run_as_group"):
        gid = csc.run_as_group
    elif psc.HasField("run_as_group"):
        gid = psc.run_as_group
    if agent == 0:
        uid = default_uid if uid is None else uid
        gid = (default_gid if uid != 0 else 0) if gid is None else gid
    elif uid not in (None, agent) or (gid is not None and gid != os.getegid()):
        raise ConfigError(
            f"container {container.name}: securityContext.runAsUser/runAsGroup need an agent running as root "
            f"(the agent runs as uid {agent})"
        )
    effective = agent if uid is None else uid
    non_root = csc.run_as_non_root if csc.HasField("run_as_non_root") else psc.run_as_non_root
    if effective == 0 and non_root:
        raise ConfigError(f"container {container.name}: runAsNonRoot is set but the container would run as uid 0")
    if effective == 0 and refuse_root:
        raise ConfigError(
            f"container {container.name}: would run as uid 0, and this agent refuses root workloads "
            "(set securityContext.runAsUser)"
        )
    if uid is None or agent != 0:
        return RunAs(None, None)
    return RunAs(uid, gid, tuple(psc.supplemental_groups))


def give_to(path: str, run_as: RunAs) -> None:
    """Make a pod directory the workload's own (working directory, volumes), so an unprivileged workload can
    use it; files inside keep their modes."""
    if run_as.uid is None:
        return
    gid = run_as.gid if run_as.gid is not None else -1
    # follow_symlinks=False (lchown): the workload may have swapped any entry for a link since it was listed,
    # and a chown through it would hand the workload a file outside its sandbox.
    # A file with more than one link is shared: an artifact hard-linked from the node's cache (read-only,
    # placed by the agent), or a link the workload made to a file elsewhere (where protected_hardlinks is
    # off, to any file it can reach). Handing it over would give the workload that inode, so it is left.
    for root, dirs, files in os.walk(path):
        os.chown(root, run_as.uid, gid, follow_symlinks=False)
        for name in dirs:
            os.chown(os.path.join(root, name), run_as.uid, gid, follow_symlinks=False)
        for name in files:
            full = os.path.join(root, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                continue
            os.chown(full, run_as.uid, gid, follow_symlinks=False)


def closed_to_others(path: Path) -> Path | None:
    """The first of ``path`` and its parents that other users cannot pass through (no ``o+x``), or None.

    A workload run as another user than the agent's reaches its sandbox from its working directory (entered
    before the switch) but reaches volumes by absolute path (``NAVARCH_VOLUME_*``) only if this is None."""
    for p in [path, *path.parents]:
        with contextlib.suppress(OSError):
            if not p.stat().st_mode & 0o001:
                return p
    return None
