"""Start etcd, navarch-apiserver, one node agent, the scheduler and the controller manager on loopback, all
talking mutual TLS (the cluster ``navarch up --agents 1`` makes, in a temporary directory); create a Pod
with grpcurl, watch it run, read its logs and exec into it with the navarch CLI; then apply a Deployment,
follow its rollout and scale it.

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

from cli import config as cfg
from controlplane.clusterpki import ClusterPki
from controlplane.launcher.etcd import free_port
from controlplane.launcher.localcluster import LocalCluster, default_workload_identity

CONTEXT = "navarch-quickstart"


def grpcurl(address: str, tls: list[str], *args: str, data: Mapping[str, object] | None = None) -> str:
    cmd = [shutil.which("grpcurl") or "grpcurl", *tls]
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    out = subprocess.run([*cmd, address, *args], capture_output=True, text=True, timeout=30, check=False)
    if out.returncode != 0:
        raise SystemExit(f"grpcurl {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def wait_for(env: Mapping[str, str], args: list[str], wanted: str, cluster: LocalCluster) -> None:
    """Run ``navarch ARGS`` until it prints ``wanted`` (90 s at most)."""
    deadline = time.monotonic() + 90
    delay = 0.1
    while time.monotonic() < deadline:
        dead = [s.daemon for s in cluster.components.values() if not s.daemon.running()]
        if dead:
            raise SystemExit(f"{dead[0].name} exited; see {dead[0].log_path}")
        out = subprocess.run(["navarch", *args], capture_output=True, text=True, timeout=30, env=env, check=False)
        if out.stdout.strip() == wanted:
            return
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    raise SystemExit(f"navarch {' '.join(args)} never printed {wanted}; see the logs in {cluster.logs}")


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


def show(env: Mapping[str, str], args: list[str]) -> None:
    """Run a navarch command as a user would type it and print what it printed; a failing command ends the
    tour with its exit code named (CI runs the tour, so a broken command fails CI)."""
    print(f"$ navarch {shlex.join(args)}")
    shown = subprocess.run(["navarch", *args], capture_output=True, text=True, timeout=90, env=env, check=False)
    print((shown.stdout + shown.stderr).rstrip() + "\n")
    if shown.returncode != 0:
        raise SystemExit(f"`navarch {shlex.join(args)}` exited {shown.returncode}; see the logs above")


def cli_config(path: Path, address: str, c: ClusterPki, cluster: LocalCluster) -> None:
    """A CLI config of its own for the tour, with the admin certificate (the user's own config is untouched)."""
    data = cfg.load(path)
    metrics = {name: f"{cluster.metrics_scheme}://{where}" for name, where in cluster.metrics.items()}
    cfg.upsert(data, "clusters", CONTEXT, server=address, certificate_authority=c.ca, metrics=metrics)
    cfg.upsert(data, "users", CONTEXT, client_certificate=c.cert("admin"), client_key=c.key("admin"))
    cfg.upsert(data, "contexts", CONTEXT, cluster=CONTEXT, user=CONTEXT, namespace="default")
    data["current-context"] = CONTEXT
    cfg.save(data, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exit", action="store_true", help="stop everything after the demonstration")
    parser.add_argument("--port", type=int, default=6443, help="API server port (0: any free port)")
    opts = parser.parse_args()
    port = opts.port or free_port()
    address = f"127.0.0.1:{port}"
    data_dir = Path(tempfile.mkdtemp(prefix="navarch-quickstart-"))
    # The same cluster as `navarch up --agents 1`, mutual TLS included, in a directory of its own.
    cluster = LocalCluster(data_dir / "cluster", agents=1, port=port, run_as=default_workload_identity(None, None))
    assert cluster.pki is not None
    c = cluster.pki
    tls = ["-cacert", c.ca, "-cert", c.cert("admin"), "-key", c.key("admin")]
    pki_dir = f"PKI={c.root}"
    env = {**os.environ, "NAVARCH_CONFIG": str(data_dir / "config")}
    env.pop("NAVARCH_SERVER", None)
    cli_config(data_dir / "config", address, c, cluster)
    try:
        cluster.start()
        node = cluster.nodes[0][0]
        wait_for(env, ["get", "node", node, "-o", "jsonpath={.status.conditions[0].status}"], "True", cluster)
        print(f"etcd, navarch-apiserver ({address}), scheduler, controller manager and node {node}: mutual TLS")
        print(f"with certificates in {c.root}; logs in {cluster.logs}; the CLI uses {env['NAVARCH_CONFIG']}\n")
        flags = "-cacert $PKI/ca.pem -cert $PKI/admin.pem -key $PKI/admin-key.pem"
        print(f"$ {pki_dir}; grpcurl {flags} {address} list")
        print(grpcurl(address, tls, "list"))
        pod = {
            "object": {
                "pod": {
                    "metadata": {"name": "hello", "labels": {"app": "hello"}},
                    "spec": {
                        "nodeName": node,
                        "containers": [
                            {"name": "main", "command": ["sh", "-c", "echo hello from navarch; exec sleep 3600"]}
                        ],
                    },
                }
            }
        }
        print(f"$ grpcurl {flags} -d '{json.dumps(pod)}' {address} navarch.v1.Api/Create")
        created = json.loads(grpcurl(address, tls, "navarch.v1.Api/Create", data=pod))
        meta = created["pod"]["metadata"]
        rv = meta["resource_version"]
        print(f"created pod {meta['namespace']}/{meta['name']} uid={meta['uid']} resourceVersion={rv}\n")
        query = {"kind": "pods", "namespace": "default", "label_selector": "app=hello"}
        print(f"$ grpcurl {flags} -d '{json.dumps(query)}' {address} navarch.v1.Api/List")
        listed = json.loads(grpcurl(address, tls, "navarch.v1.Api/List", data=query))
        for item in listed["items"]:
            m = item["pod"]["metadata"]
            print(f"  {m['namespace']}/{m['name']}  phase={item['pod']['status']['phase']}")
        print(f"list resourceVersion {listed['resource_version']}\n")
        wait_for(env, ["get", "pod", "hello", "-o", "jsonpath={.status.phase}"], "Running", cluster)
        for args in (
            ["get", "nodes"],
            ["get", "pods", "-o", "wide"],
            ["logs", "hello"],
            ["exec", "hello", "--", "sh", "-c", "echo running in $PWD as $(id -un)"],
        ):
            show(env, args)
        manifest = data_dir / "web.yaml"
        manifest.write_text(DEPLOYMENT)
        print(f"$ cat web.yaml\n{DEPLOYMENT}")
        for args in (
            ["apply", "-f", str(manifest)],
            ["rollout", "status", "deployment", "web", "--timeout", "60s"],
            ["get", "deployments"],
            ["get", "replicasets", "-l", "app=web"],
            ["scale", "deployment", "web", "--replicas", "3"],
            ["rollout", "status", "deployment", "web", "--timeout", "60s"],
            ["get", "pods", "-l", "app=web", "-o", "wide"],
            ["cluster-info"],
        ):
            show(env, args)
        if opts.exit:
            return 0
        print(f"The cluster is running (NAVARCH_CONFIG={env['NAVARCH_CONFIG']}). Press Ctrl-C to stop it.")
        try:
            while True:
                cluster.supervise_once()
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
    finally:
        cluster.stop()
        if not os.environ.get("NAVARCH_QUICKSTART_KEEP"):
            shutil.rmtree(data_dir, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
