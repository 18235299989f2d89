"""A workload that swaps the files and directories of its configMap volume for symlinks while the agent keeps
refreshing the volume must never get the agent to write, chmod, chown or delete anything outside the pod's
sandbox (plausible bugs, the issue's finding: the refresh wrote through a `.key.tmp` or `key` link, or into
a directory swapped for a link, with root's privileges). Runs for 30 s of swapping, as the issue asks.

Written to fail on the path-based projection it replaces: with its errors ignored, it overwrote and
chmodded the file outside within 5 s ("v6066" in the victim)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import threading
import time
from pathlib import Path

from controlplane.api.pb import core_pb2
from nodeagent.sandbox import ConfigError, Sandbox

SWAP_SECONDS = 30.0


class ConfigMaps:
    def __init__(self) -> None:
        self.version = 0

    async def get_by_name(self, kind: str, name: str, namespace: str) -> core_pb2.ConfigMap:
        self.version += 1  # new content every refresh: every round rewrites every file
        cm = core_pb2.ConfigMap(api_version="v1", kind="ConfigMap")
        cm.data.update({"key": f"v{self.version}", "sub/inner": f"w{self.version}"})
        return cm


def pod() -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace = "web", "default"
    vol = p.spec.volumes.add(name="cfg")
    vol.config_map.name = "app"
    vol.config_map.items.add(key="key", path="key")
    vol.config_map.items.add(key="sub/inner", path="sub/inner")
    return p


def snapshot(root: Path) -> dict[str, tuple[int, int, int, bytes]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p)] = (st.st_mode, st.st_uid, st.st_mtime_ns, p.read_bytes() if p.is_file() else b"")
    return out


async def test_swapping_links_under_a_refreshing_volume_never_reaches_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    victim = outside / "victim"
    victim.write_text("untouched")
    victim.chmod(0o640)
    (outside / "dir" / "inner").write_text("untouched too")
    before = snapshot(outside)
    sandbox = Sandbox(tmp_path / "pods" / "uid")
    sandbox.create()
    client = ConfigMaps()
    await sandbox.prepare_volumes(client, pod())  # type: ignore[arg-type]
    vol = sandbox.volumes / "cfg"
    stop = threading.Event()
    swaps = 0

    def attacker() -> None:
        nonlocal swaps
        targets = [(vol / "key", victim), (vol / ".key.tmp", victim), (vol / "sub", outside / "dir")]
        targets += [(vol / "sub" / ".inner.tmp", victim), (vol / "sub" / "inner", victim)]
        while not stop.is_set():
            link, target = random.choice(targets)
            # The attacker itself must not reach outside: it only touches names whose parent is a real
            # directory of the volume (never through a link it planted).
            if link.parent != vol and link.parent.is_symlink():
                continue
            with contextlib.suppress(OSError):
                if link.is_symlink() or not link.exists():
                    link.unlink(missing_ok=True)
                elif link.is_dir():
                    shutil.rmtree(link)
                else:
                    link.unlink()
                link.symlink_to(target)
                swaps += 1

    thread = threading.Thread(target=attacker, daemon=True)
    descriptors_before = len(os.listdir("/proc/self/fd"))
    thread.start()
    refreshes = 0
    deadline = time.monotonic() + SWAP_SECONDS
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(ConfigError):
                await sandbox.prepare_volumes(client, pod())  # type: ignore[arg-type]
            refreshes += 1
            await asyncio.sleep(0)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert swaps > 1000 and refreshes > 1000, (swaps, refreshes)
    assert snapshot(outside) == before, "something outside the sandbox changed"
    # Failed refreshes leak nothing: a walk that the attacker broke used to keep its directory descriptor
    # (4,000 open after 30 s; an agent would hit its descriptor limit and stop starting containers).
    assert len(os.listdir("/proc/self/fd")) <= descriptors_before + 5
    # Once the attacker stops, the volume is whole again.
    await sandbox.prepare_volumes(client, pod())  # type: ignore[arg-type]
    assert (vol / "key").read_text().startswith("v") and not (vol / "key").is_symlink()
    assert (vol / "sub" / "inner").read_text().startswith("w") and not (vol / "sub").is_symlink()
    assert os.stat(vol / "key").st_mode & 0o777 == 0o644
