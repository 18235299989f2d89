"""``navarch up``'s supervisor restarts a component that dies (docs/cli.md: "The supervisor restarts any
component that exits"), and the restarted one works (plausible bugs: a dead component left dead; restarted
with its old, now-taken port; the state file keeping the dead pid)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from controlplane.launcher.etcd import free_port
from controlplane.launcher.localcluster import pid_alive
from tests.e2e.test_readme_commands import _env


def test_a_killed_component_is_restarted_and_works(tmp_path: Path) -> None:
    env, port, data = _env(tmp_path), free_port(), tmp_path / "cluster"
    up = subprocess.run(
        ["navarch", "up", "--agents", "1", "--port", str(port), "--data-dir", str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        state = json.loads((data / "cluster.json").read_text())
        name = next(n for n in state["components"] if "controller-manager" in n)
        old = state["components"][name]
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 60
        new = old
        while time.monotonic() < deadline:
            new = json.loads((data / "cluster.json").read_text())["components"][name]
            if new != old and pid_alive(new):
                break
            time.sleep(0.5)
        assert new != old and pid_alive(new), f"{name} was not restarted"
        # The restarted controller manager does its job: a ReplicaSet gets its pod.
        manifest = tmp_path / "rs.yaml"
        manifest.write_text(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: after}\nspec:\n  replicas: 1\n"
            "  selector: {matchLabels: {app: after}}\n  template:\n    metadata: {labels: {app: after}}\n"
            "    spec: {containers: [{name: m, command: [sleep, '300']}]}\n"
        )
        navarch = ["navarch", "--server", f"127.0.0.1:{port}"]
        applied = subprocess.run(
            [*navarch, "apply", "-f", str(manifest)], env=env, capture_output=True, timeout=60, check=False
        )
        assert applied.returncode == 0, applied.stderr
        deadline = time.monotonic() + 60
        pods = ""
        while time.monotonic() < deadline:
            pods = subprocess.run(
                [*navarch, "get", "pods", "-l", "app=after", "-o", "name"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            ).stdout
            if pods.strip():
                break
            time.sleep(0.5)
        assert pods.strip().startswith("pod/after-"), "the restarted controller manager created no pod"
        log = (data / "supervisor.log").read_text()
        assert "restarted (restart 1)" in log
    finally:
        subprocess.run(
            ["navarch", "down", "--purge", "--data-dir", str(data)], env=env, capture_output=True, timeout=120
        )
