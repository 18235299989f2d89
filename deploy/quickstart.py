"""Start etcd, navarch-apiserver, one node agent, the scheduler and the controller manager on loopback;
create a Pod with grpcurl, watch it run, read its logs and exec into it with the navarch CLI; then apply a
Deployment, follow its rollout and scale it.

Run through ``bash deploy/quickstart.sh``, which prepares the virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from controlplane.launcher import processes
from controlplane.launcher.etcd import EtcdCluster, free_port

NODE = "local"


def grpcurl(address: str, *args: str, data: Mapping[str, object] | None = None) -> str:
    cmd = [shutil.which("grpcurl") or "grpcurl", "-plaintext"]
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    out = subprocess.run([*cmd, address, *args], capture_output=True, text=True, timeout=30, check=False)
    if out.returncode != 0:
        raise SystemExit(f"grpcurl {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def wait_serving(address: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("navarch-apiserver exited; see its log above")
        check = subprocess.run(
            ["grpcurl", "-plaintext", address, "grpc.health.v1.Health/Check"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if '"SERVING"' in check.stdout:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise SystemExit("navarch-apiserver did not become ready in time")


def wait_for(env: Mapping[str, str], args: list[str], wanted: str, daemon: processes.Daemon) -> None:
    """Run ``navarch ARGS`` until it prints ``wanted`` (60 s at most)."""
    deadline = time.monotonic() + 60
    delay = 0.1
    while time.monotonic() < deadline:
        if not daemon.running():
            raise SystemExit(f"{daemon.name} exited; see {daemon.log_path}")
        out = subprocess.run(["navarch", *args], capture_output=True, text=True, timeout=30, env=env, check=False)
        if out.stdout.strip() == wanted:
            return
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    raise SystemExit(f"navarch {' '.join(args)} never printed {wanted}; see {daemon.log_path}")


DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        command: ["sh", "-c", "echo serving; exec sleep 3600"]
"""


def show(env: Mapping[str, str], address: str, args: list[str]) -> None:
    """Run a navarch command as a user would type it and print what it printed; a failing command ends the
    tour with its exit code named (CI runs the tour, so a broken command fails CI)."""
    print(f"$ NAVARCH_SERVER={address} navarch {shlex.join(args)}")
    shown = subprocess.run(["navarch", *args], capture_output=True, text=True, timeout=90, env=env, check=False)
    print((shown.stdout + shown.stderr).rstrip() + "\n")
    if shown.returncode != 0:
        raise SystemExit(f"`navarch {shlex.join(args)}` exited {shown.returncode}; see the logs above")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exit", action="store_true", help="stop everything after the demonstration")
    parser.add_argument("--port", type=int, default=6443, help="API server port (0: any free port)")
    opts = parser.parse_args()
    port = opts.port or free_port()
    address = f"127.0.0.1:{port}"
    data_dir = Path(tempfile.mkdtemp(prefix="navarch-quickstart-"))
    etcd = EtcdCluster(1, base_dir=data_dir / "etcd").start()
    print(f"etcd            {etcd.endpoints[0]}   (data in {data_dir / 'etcd'})")
    apiserver = processes.apiserver(etcd.endpoints, address, data_dir / "apiserver.log").start()
    agent = processes.agent([address], NODE, "127.0.0.1", data_dir / "agent", data_dir / "agent.log")
    status_port = "0" if opts.port == 0 else None
    scheduler = processes.scheduler(
        [address], f"127.0.0.1:{status_port or 10259}", data_dir / "scheduler.log", "--leader-elect"
    )
    controllers = processes.controller_manager(
        [address], f"127.0.0.1:{status_port or 10257}", data_dir / "controller-manager.log", "--leader-elect"
    )
    env = {**os.environ, "NAVARCH_SERVER": address}
    try:
        assert apiserver.proc is not None
        wait_serving(address, apiserver.proc)
        print(f"apiserver       {address}   (log in {data_dir / 'apiserver.log'})")
        agent.start()
        wait_for(env, ["get", "node", NODE, "-o", "jsonpath={.status.conditions[0].status}"], "True", agent)
        print(f"agent           node {NODE}   (log in {data_dir / 'agent.log'})")
        scheduler.start()
        print(f"scheduler       (log in {data_dir / 'scheduler.log'})")
        controllers.start()
        print(f"controllers     (log in {data_dir / 'controller-manager.log'})\n")
        print(f"$ grpcurl -plaintext {address} list")
        print(grpcurl(address, "list"))
        pod = {
            "object": {
                "pod": {
                    "metadata": {"name": "hello", "labels": {"app": "hello"}},
                    "spec": {
                        "nodeName": NODE,
                        "containers": [
                            {"name": "main", "command": ["sh", "-c", "echo hello from navarch; exec sleep 3600"]}
                        ],
                    },
                }
            }
        }
        print(f"$ grpcurl -plaintext -d '{json.dumps(pod)}' {address} navarch.v1.Api/Create")
        created = json.loads(grpcurl(address, "navarch.v1.Api/Create", data=pod))
        meta = created["pod"]["metadata"]
        rv = meta["resource_version"]
        print(f"created pod {meta['namespace']}/{meta['name']} uid={meta['uid']} resourceVersion={rv}\n")
        query = {"kind": "pods", "namespace": "default", "label_selector": "app=hello"}
        print(f"$ grpcurl -plaintext -d '{json.dumps(query)}' {address} navarch.v1.Api/List")
        listed = json.loads(grpcurl(address, "navarch.v1.Api/List", data=query))
        for item in listed["items"]:
            m = item["pod"]["metadata"]
            print(f"  {m['namespace']}/{m['name']}  phase={item['pod']['status']['phase']}")
        print(f"list resourceVersion {listed['resource_version']}\n")
        wait_for(env, ["get", "pod", "hello", "-o", "jsonpath={.status.phase}"], "Running", agent)
        for args in (
            ["get", "nodes"],
            ["get", "pods", "-o", "wide"],
            ["logs", "hello"],
            ["exec", "hello", "--", "sh", "-c", "echo running in $PWD"],
        ):
            show(env, address, args)
        manifest = data_dir / "web.yaml"
        manifest.write_text(DEPLOYMENT)
        print(f"$ cat web.yaml\n{DEPLOYMENT}")
        for args in (
            ["apply", "-f", str(manifest)],
            ["rollout", "status", "deployment", "web", "--timeout", "60"],
            ["get", "deployments"],
            ["get", "replicasets", "-l", "app=web"],
            ["scale", "deployment", "web", "--replicas", "3"],
            ["rollout", "status", "deployment", "web", "--timeout", "60"],
            ["get", "pods", "-l", "app=web", "-o", "wide"],
            ["cluster-info"],
        ):
            show(env, address, args)
        if opts.exit:
            return 0
        print("The cluster is running. Press Ctrl-C to stop it.")
        try:
            while True:
                signal.pause()
        except KeyboardInterrupt:
            return 0
    finally:
        controllers.stop()
        scheduler.stop()
        agent.stop()
        processes.kill_workloads(data_dir / "agent")
        apiserver.stop()
        etcd.stop()
        if not os.environ.get("NAVARCH_QUICKSTART_KEEP"):
            shutil.rmtree(data_dir, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
