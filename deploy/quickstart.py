"""Start etcd and navarch-apiserver on loopback, then create and list objects with grpcurl.

Run through ``bash deploy/quickstart.sh``, which prepares the virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from controlplane.launcher.etcd import EtcdCluster, free_port


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
    log = open(data_dir / "apiserver.log", "wb")  # noqa: SIM115 - handed to the child process
    apiserver = subprocess.Popen(
        ["navarch-apiserver", "--etcd-servers", etcd.endpoints[0], "--listen", address],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_serving(address, apiserver)
        print(f"apiserver       {address}   (log in {data_dir / 'apiserver.log'})\n")
        print(f"$ grpcurl -plaintext {address} list")
        print(grpcurl(address, "list"))
        pod = {
            "object": {
                "pod": {
                    "metadata": {"name": "hello", "labels": {"app": "hello"}},
                    "spec": {"containers": [{"name": "main", "command": ["sleep", "3600"]}]},
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
        env = {**os.environ, "NAVARCH_SERVER": address}
        for args in (["get", "pods", "-o", "wide"], ["get", "namespaces"], ["cluster-info"]):
            print(f"$ NAVARCH_SERVER={address} navarch {' '.join(args)}")
            shown = subprocess.run(["navarch", *args], capture_output=True, text=True, timeout=30, env=env, check=False)
            print((shown.stdout + shown.stderr).rstrip() + "\n")
        if opts.exit:
            return 0
        print("The cluster is running. Press Ctrl-C to stop it.")
        try:
            while True:
                signal.pause()
        except KeyboardInterrupt:
            return 0
    finally:
        apiserver.terminate()
        apiserver.wait(timeout=15)
        log.close()
        etcd.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
