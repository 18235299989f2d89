"""What security costs: the same calls against a plain-text API server and a fully secured one.

Both run as processes on one etcd member (fsync on). The secure one has mutual TLS, a non-admin user
authorized by RBAC (the ``edit`` ClusterRole through a binding), the per-user rate limit (set high enough not
to trigger), a Metadata audit log on disk, and Secrets encrypted with AES-GCM. Prints ops/s, p50 and p99 per
operation and the secure/plain ratio. Nothing is asserted: record the figures in docs/performance.md.

    python bench/security_overhead.py [--clients 16] [--ops 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from api_throughput import pct, run  # bench/ is on sys.path when a script here runs

from controlplane import transport
from controlplane.api.objects import from_manifest, wrap
from controlplane.api.pb import api_pb2, api_pb2_grpc
from controlplane.clusterpki import ClusterPki, init_cluster_pki, issue_user
from controlplane.launcher.etcd import EtcdCluster, free_port

BIN = Path(sys.executable).parent


def start_apiservers(
    etcd: EtcdCluster, work: Path, cluster_pki: ClusterPki
) -> tuple[list[subprocess.Popen[bytes]], int, int]:
    plain_port, secure_port = free_port(), free_port()
    encryption = work / "encryption.yaml"
    key = base64.b64encode(os.urandom(32)).decode()
    encryption.write_text(
        "kind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n"
        f"      - aesgcm:\n          keys:\n            - {{name: k1, secret: {key}}}\n      - identity: {{}}\n"
    )
    common = [str(BIN / "navarch-apiserver"), "--etcd-servers", etcd.endpoints[0]]
    plain = subprocess.Popen(
        [*common, "--listen", f"127.0.0.1:{plain_port}", "--insecure"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    secure = subprocess.Popen(
        [
            *common,
            "--listen",
            f"127.0.0.1:{secure_port}",
            "--tls-cert-file",
            cluster_pki.cert("apiserver"),
            "--tls-private-key-file",
            cluster_pki.key("apiserver"),
            "--client-ca-file",
            cluster_pki.ca,
            "--agent-client-certificate",
            cluster_pki.cert("apiserver-agent-client"),
            "--agent-client-key",
            cluster_pki.key("apiserver-agent-client"),
            "--encryption-provider-config",
            str(encryption),
            "--audit-log-path",
            str(work / "audit.log"),
            "--max-requests-per-user",
            "100000",
            "--max-requests-burst",
            "100000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return [plain, secure], plain_port, secure_port


async def wait_serving(api: api_pb2_grpc.ApiStub) -> None:
    for _ in range(200):
        try:
            await api.Get(api_pb2.GetRequest(kind="ns", name="default"), timeout=1)
            return
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.1)
    raise SystemExit("the API server did not start")


def objects(kind: str, name: str, namespace: str) -> api_pb2.Object:
    body = {"data": {"payload": "x" * 250}} if kind == "ConfigMap" else {"stringData": {"payload": "x" * 250}}
    return wrap(
        from_manifest({"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": namespace}, **body})
    )


async def measure(
    api: api_pb2_grpc.ApiStub, namespace: str, opts: argparse.Namespace
) -> dict[str, tuple[float, list[float]]]:
    results: dict[str, tuple[float, list[float]]] = {}
    for kind, plural in (("ConfigMap", "cm"), ("Secret", "secrets")):

        async def create(i: int, kind: str = kind) -> object:
            return await api.Create(api_pb2.CreateRequest(object=objects(kind, f"o{i}", namespace)))

        async def get(i: int, plural: str = plural) -> object:
            return await api.Get(api_pb2.GetRequest(kind=plural, namespace=namespace, name=f"o{i}"))

        results[f"Create {kind}"] = await run(create, opts.ops, opts.clients)
        results[f"Get {kind}"] = await run(get, opts.ops, opts.clients)
    return results


async def main(opts: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="navarch-bench-security-"))
    cluster_pki = init_cluster_pki(work / "pki")
    cert, key = issue_user(cluster_pki, "bench", ())
    with EtcdCluster(1, fast=False) as etcd:
        procs, plain_port, secure_port = start_apiservers(etcd, work, cluster_pki)
        plain_ch = transport.make_channel([f"127.0.0.1:{plain_port}"])
        admin_ch = transport.make_channel(
            [f"127.0.0.1:{secure_port}"],
            transport.ChannelTLS(cluster_pki.ca, cluster_pki.cert("admin"), cluster_pki.key("admin")),
        )
        bench_ch = transport.make_channel([f"127.0.0.1:{secure_port}"], transport.ChannelTLS(cluster_pki.ca, cert, key))
        try:
            plain, admin, user = (api_pb2_grpc.ApiStub(c) for c in (plain_ch, admin_ch, bench_ch))
            await wait_serving(plain)
            await wait_serving(admin)
            for api, ns in ((plain, "plain"), (admin, "secure")):
                await api.Create(
                    api_pb2.CreateRequest(
                        object=wrap(from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
                    )
                )
            binding = from_manifest(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": "bench-edit", "namespace": "secure"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                    "subjects": [{"kind": "User", "name": "bench"}],
                }
            )
            await admin.Create(api_pb2.CreateRequest(object=wrap(binding)))
            for _ in range(100):  # the binding reaches the authorizer through the watch cache
                try:
                    await user.Get(api_pb2.GetRequest(kind="cm", namespace="secure", name="none"), timeout=1)
                except grpc.aio.AioRpcError as err:
                    if err.code() == grpc.StatusCode.NOT_FOUND:
                        break
                await asyncio.sleep(0.05)
            began = time.perf_counter()
            baseline = await measure(plain, "plain", opts)
            secured = await measure(user, "secure", opts)
            elapsed = time.perf_counter() - began
        finally:
            for ch in (plain_ch, admin_ch, bench_ch):
                await ch.close()
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)
    print(f"{opts.ops} ops per row, {opts.clients} concurrent clients, {os.cpu_count()} CPUs ({elapsed:.0f} s)")
    header = ("operation", "plain ops/s", "p50 ms", "p99 ms", "secure ops/s", "p50 ms", "p99 ms", "ratio")
    widths = (18, 12, 8, 8, 14, 8, 8, 7)
    print("".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))))
    for name, (rate, lat) in baseline.items():
        srate, slat = secured[name]
        print(
            f"{name:<18}{rate:>12.0f}{pct(lat, 50):>8.2f}{pct(lat, 99):>8.2f}"
            f"{srate:>14.0f}{pct(slat, 50):>8.2f}{pct(slat, 99):>8.2f}{srate / rate:>7.2f}"
        )
    audit_lines = sum(1 for _ in (work / "audit.log").open())
    print(f"audit log: {audit_lines} lines, {(work / 'audit.log').stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--ops", type=int, default=2000)
    asyncio.run(main(parser.parse_args()))
