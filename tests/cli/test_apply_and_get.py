"""navarch apply / create / get / delete against a real API server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap
from pathlib import Path

import yaml

from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig
from tests.cli.conftest import NAVARCH, Cli

APP = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        command: [python3, -m, http.server, "8080"]
        ports: [{{containerPort: 8080, name: http}}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: http}}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
"""


async def test_apply_creates_then_reports_unchanged_then_configured(
    cli: Cli, namespace: str, tmp_path: Path, apiserver: ApiServer
) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(APP.format(replicas=2))
    first = await cli("apply", "-f", str(manifest), "-n", namespace)
    assert first.code == 0, first.err
    assert first.out.splitlines() == [
        "deployment.apps/web created",
        "service/web created",
        "configmap/settings created",
    ]
    again = await cli("apply", "-f", str(manifest), "-n", namespace)
    assert again.out.splitlines() == [
        "deployment.apps/web unchanged",
        "service/web unchanged",
        "configmap/settings unchanged",
    ], again.err
    manifest.write_text(APP.format(replicas=5))
    edited = await cli("apply", "-f", str(manifest), "-n", namespace)
    assert edited.out.splitlines() == [
        "deployment.apps/web configured",
        "service/web unchanged",
        "configmap/settings unchanged",
    ], edited.err
    async with ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"])) as client:
        d = await client.get(apps_pb2.Deployment, "web", namespace)
        assert d.spec.replicas == 5


async def test_removing_a_field_from_the_manifest_removes_it_from_the_object(
    cli: Cli, namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1', b: '2'}\n")
    assert (await cli("apply", "-f", str(manifest), "-n", namespace)).code == 0
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1'}\n")
    out = await cli("apply", "-f", str(manifest), "-n", namespace)
    assert out.out.strip() == "configmap/c configured"
    got = await cli("get", "cm", "c", "-n", namespace, "-o", "jsonpath={.data}")
    assert json.loads(got.out) == {"a": "1"}


async def test_invalid_manifests_name_file_document_and_field_and_send_nothing(
    cli: Cli, namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: fine}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: broken}
        spec:
          containers:
          - name: main
        ---
        apiVersion: v1
        kind: Gadget
        metadata: {name: what}
        """)
    )
    out = await cli("apply", "-f", str(manifest), "-n", namespace)
    assert out.code != 0 and out.out == ""
    assert f"error: {manifest}[1]: Pod " in out.err and "spec.containers[0].command: required" in out.err
    assert f"{manifest}[2]: no kind 'Gadget'" in out.err
    assert "Traceback" not in out.err
    listed = await cli("get", "cm", "-n", namespace, "-o", "name")
    assert "fine" not in listed.out  # nothing was sent


async def test_get_yaml_round_trips_through_apply(cli: Cli, namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(APP.format(replicas=1))
    assert (await cli("apply", "-f", str(manifest), "-n", namespace)).code == 0
    dumped = await cli("get", "deploy", "web", "-n", namespace, "-o", "yaml")
    assert dumped.code == 0
    saved = tmp_path / "dumped.yaml"
    saved.write_text(dumped.out)
    reapplied = await cli("apply", "-f", str(saved))
    assert reapplied.code == 0, reapplied.err
    assert reapplied.out.strip() in ("deployment.apps/web configured", "deployment.apps/web unchanged")
    after = yaml.safe_load((await cli("get", "deploy", "web", "-n", namespace, "-o", "yaml")).out)
    before = yaml.safe_load(dumped.out)
    assert after["spec"] == before["spec"]


async def test_get_tables_use_kubernetes_columns(cli: Cli, namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(APP.format(replicas=3))
    await cli("apply", "-f", str(manifest), "-n", namespace)
    deploys = (await cli("get", "deploy", "-n", namespace)).out.splitlines()
    assert deploys[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deploys[1].split()[:4] == ["web", "0/3", "0", "0"]
    svc = (await cli("get", "svc", "-n", namespace, "-o", "wide")).out.splitlines()
    assert svc[0].split()[:7] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "ENDPOINTS", "AGE"]
    every = (await cli("get", "configmaps", "-A", "--show-labels")).out.splitlines()
    assert every[0].split() == ["NAMESPACE", "NAME", "DATA", "AGE", "LABELS"]
    assert any(line.split()[:2] == [namespace, "settings"] for line in every)
    names = (await cli("get", "all-the-things")).err
    assert "doesn't have a resource type" in names
    jp = await cli("get", "deploy", "-n", namespace, "-o", "jsonpath={.items[*].metadata.name}")
    assert jp.out.strip() == "web"
    missing = await cli("get", "pods", "-n", namespace)
    assert missing.err.strip() == f"No resources found in {namespace} namespace."


async def test_get_watch_prints_changes_made_by_another_client(
    cli_env: dict[str, str], namespace: str, apiserver: ApiServer
) -> None:
    async with ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"])) as client:
        cm = core_pb2.ConfigMap()
        cm.metadata.name, cm.metadata.namespace = "watched", namespace
        cm.data["a"] = "1"
        await client.create(cm)
        proc = await asyncio.create_subprocess_exec(
            NAVARCH, "get", "cm", "watched", "-n", namespace, "-w", stdout=subprocess.PIPE, env=cli_env
        )
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(20):
                header = (await proc.stdout.readline()).decode()
                first = (await proc.stdout.readline()).decode()
                assert header.split()[:2] == ["NAME", "DATA"] and first.split()[:2] == ["watched", "1"]
                await client.patch(core_pb2.ConfigMap, "watched", {"data": {"b": "2"}}, namespace)
                update = (await proc.stdout.readline()).decode()
            assert update.split()[:2] == ["watched", "2"]
        finally:
            proc.kill()
            await proc.wait()


async def test_create_refuses_existing_and_delete_by_file_label_and_all(
    cli: Cli, namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(APP.format(replicas=1))
    assert (await cli("create", "-f", str(manifest), "-n", namespace)).code == 0
    again = await cli("create", "-f", str(manifest), "-n", namespace)
    assert again.code == 1 and "already exists" in again.err
    gone = await cli("delete", "-f", str(manifest), "-n", namespace, "--wait")
    assert gone.out.splitlines() == [
        'deployment.apps "web" deleted',
        'service "web" deleted',
        'configmap "settings" deleted',
    ]
    for i in range(3):
        await cli(
            "apply",
            "-f",
            "-",
            "-n",
            namespace,
            stdin=f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}, labels: {{n: '{i % 2}'}}}}\n",
        )
    by_label = await cli("delete", "cm", "-l", "n=0", "-n", namespace)
    assert sorted(by_label.out.splitlines()) == ['configmap "c0" deleted', 'configmap "c2" deleted']
    rest = await cli("delete", "cm", "--all", "-n", namespace)
    assert rest.out.splitlines() == ['configmap "c1" deleted']
    missing = await cli("delete", "cm", "nothing", "-n", namespace)
    assert missing.code == 1 and 'ConfigMap "' in missing.err and "not found" in missing.err
    assert (await cli("delete", "cm", "nothing", "-n", namespace, "--ignore-not-found")).code == 0
