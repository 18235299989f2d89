"""Artifacts end to end: a Deployment whose program is a tarball fetched from an HTTP server the test runs;
the node's cache serves the second replica without a second download (the server's own count proves it); a
wrong hash and a tarball reaching outside its directory are refused, naming why (plausible bugs: the
program never fetched; fetched per pod; run with an unchecked hash; ``../x`` written outside the sandbox)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from tests.e2e.conftest import eventually_async
from tests.e2e.workloads.conftest import StartAgents
from tests.e2e.workloads.test_services import get
from tests.helpers import ServedFiles, serve_files

PROGRAM = b"""import http.server as h, os
name = os.environ["POD_NAME"].encode()
class H(h.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"from the artifact: " + name
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
h.HTTPServer((os.environ["POD_IP"], int(os.environ["PORT_HTTP"])), H).serve_forever()
"""


def tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def served() -> Iterator[ServedFiles]:
    with serve_files() as files:
        yield files


def container(url: str, sha256: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "app",
        "command": ["python3", "app/serve.py"],
        "artifacts": [{"url": url, "sha256": sha256}],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        "ports": [{"name": "http", "containerPort": 0}],
        **extra,
    }


async def waiting_message(client: ApiClient, namespace: str, name: str) -> str:
    pod = await client.get(core_pb2.Pod, name, namespace)
    return next((c.state.waiting.message for c in pod.status.container_statuses if c.state.HasField("waiting")), "")


async def test_a_deployment_runs_a_fetched_tarball_downloaded_once_per_node(
    client: ApiClient, namespace: str, agents: StartAgents, served: ServedFiles
) -> None:
    (agent,) = await agents(1)  # one node: both replicas share its cache
    served.content["/app.tgz"] = tarball({"app/serve.py": PROGRAM})
    digest = hashlib.sha256(served.content["/app.tgz"]).hexdigest()
    spec = container(
        f"{served.base}/app.tgz",
        digest,
        readinessProbe={"tcpSocket": {"port": "http"}, "periodSeconds": 1},
    )
    await client.create(
        from_manifest(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "fetched", "namespace": namespace},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "fetched"}},
                    "template": {"metadata": {"labels": {"app": "fetched"}}, "spec": {"containers": [spec]}},
                },
            }
        )
    )

    async def both_ready() -> bool:
        pods = (await client.list(core_pb2.Pod, namespace)).items
        return len(pods) == 2 and all(
            any(c.type == "Ready" and c.status == "True" for c in p.status.conditions) for p in pods
        )

    await eventually_async(both_ready, timeout=60)
    for p in (await client.list(core_pb2.Pod, namespace)).items:
        port = next(a.container_port for s in p.status.container_statuses for a in s.allocated_ports)
        assert await asyncio.to_thread(get, p.status.pod_ip, port) == f"from the artifact: {p.metadata.name}"
    assert served.hits["/app.tgz"] == 1, "the second replica came from the node's cache"
    fetched: list[core_pb2.Event] = []

    async def fetch_reported() -> bool:  # Events are recorded in the background: give the write a moment
        events = (await client.list(core_pb2.Event, namespace)).items
        fetched[:] = [e for e in events if e.reason == "FetchedArtifact"]
        return bool(fetched)

    await eventually_async(fetch_reported, timeout=15)
    assert len(fetched) == 1 and "sha256 verified" in fetched[0].message
    cache = agent.data_dir / "artifacts" / "blobs" / digest
    assert cache.exists()


async def test_a_wrong_hash_and_an_escaping_tarball_are_refused_naming_why(
    client: ApiClient, namespace: str, agents: StartAgents, served: ServedFiles
) -> None:
    (agent,) = await agents(1)
    served.content["/app.tgz"] = tarball({"app/serve.py": PROGRAM})
    real = hashlib.sha256(served.content["/app.tgz"]).hexdigest()
    served.content["/evil.tgz"] = tarball({"../x": b"escaped"})
    evil = hashlib.sha256(served.content["/evil.tgz"]).hexdigest()
    for name, url, digest in (
        ("wrong-hash", f"{served.base}/app.tgz", "0" * 64),
        ("escaping", f"{served.base}/evil.tgz", evil),
    ):
        await client.create(
            from_manifest(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"nodeName": agent.node, "containers": [container(url, digest)]},
                }
            )
        )

    async def refused(name: str, text: str) -> bool:
        return text in await waiting_message(client, namespace, name)

    await eventually_async(lambda: refused("wrong-hash", f"expected {'0' * 64}, got {real}"), timeout=30)
    await eventually_async(lambda: refused("escaping", "refused member '../x'"), timeout=30)
    pod = await client.get(core_pb2.Pod, "wrong-hash", namespace)
    assert pod.status.container_statuses[0].state.waiting.reason == "CreateContainerConfigError"
    events = {e.reason for e in (await client.list(core_pb2.Event, namespace)).items}
    assert "FailedArtifact" in events
    assert not any(Path(p).name == "x" and Path(p).read_bytes() == b"escaped" for p in agent.data_dir.rglob("x"))


async def test_the_artifact_example_builds_reproducibly_and_runs(
    client: ApiClient, namespace: str, agents: StartAgents, served: ServedFiles
) -> None:
    """deploy/examples/artifacts: build.py makes exactly the committed app.tgz, whose hash app.yaml names, and
    the example's Deployment runs it (served by the test's server instead of `python3 -m http.server`)."""
    import importlib.util

    import yaml

    from controlplane.api.objects import from_manifest as load

    here = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "artifacts"
    spec = importlib.util.spec_from_file_location("build_example", here / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = module.build()
    assert built == (here / "app.tgz").read_bytes(), "run deploy/examples/artifacts/build.py and commit app.tgz"
    docs = list(yaml.safe_load_all((here / "app.yaml").read_text()))
    deployment = docs[0]
    art = deployment["spec"]["template"]["spec"]["containers"][0]["artifacts"][0]
    assert art["sha256"] == hashlib.sha256(built).hexdigest(), "app.yaml names another hash than app.tgz has"
    served.content["/app.tgz"] = built
    art["url"] = f"{served.base}/app.tgz"
    await agents(2)
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        await client.create(load(doc))

    async def three_ready() -> bool:
        pods = (await client.list(core_pb2.Pod, namespace)).items
        return len(pods) == 3 and all(
            any(c.type == "Ready" and c.status == "True" for c in p.status.conditions) for p in pods
        )

    await eventually_async(three_ready, timeout=60)
    ip = (await client.get(core_pb2.Service, "hello", namespace)).spec.cluster_ip
    answer = await asyncio.to_thread(get, ip, 8080)
    assert answer.startswith("hello from ") and "(fetched as an artifact)" in answer
    assert served.hits["/app.tgz"] == 2  # one download per node
