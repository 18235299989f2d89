"""The rest of navarch: edit, label, annotate, patch, scale, describe, rollout, nodes, config, cluster-info."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from controlplane.api.objects import from_manifest
from controlplane.api.pb import apps_pb2, batch_pb2, core_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.client.events import WARNING, EventRecorder
from controlplane.launcher.etcd import free_port
from tests.cli.conftest import NAVARCH, Cli
from tests.helpers import pod

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, command: [sleep, "100"]}]
"""


def _client(apiserver: ApiServer) -> ApiClient:
    return ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"]))


def _editor(tmp_path: Path, code: str) -> str:
    script = tmp_path / "editor.py"
    script.write_text("import sys, pathlib\npath = pathlib.Path(sys.argv[1])\ntext = path.read_text()\n" + code)
    return f"{sys.executable} {script}"


async def test_edit_applies_changes_and_reports_conflicts(
    cli: Cli, namespace: str, tmp_path: Path, apiserver: ApiServer
) -> None:
    await cli(
        "apply",
        "-f",
        "-",
        "-n",
        namespace,
        stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {mode: slow}\n",
    )
    editor = _editor(tmp_path, "path.write_text(text.replace('mode: slow', 'mode: fast'))\n")
    out = await cli("edit", "cm", "c", "-n", namespace, env={"EDITOR": editor})
    assert out.code == 0 and out.out.strip() == "configmap/c edited", out.err
    unchanged = await cli("edit", "cm", "c", "-n", namespace, env={"EDITOR": _editor(tmp_path, "")})
    assert unchanged.out.strip() == "Edit cancelled, no changes made."
    # Someone else changes the object while the editor is open: the edit must not overwrite it.
    racing = _editor(
        tmp_path,
        (
            "import subprocess\n"
            f"subprocess.run([{NAVARCH!r}, 'patch', 'cm', 'c', '-n', {namespace!r}, "
            '\'-p\', \'{"data": {"other": "x"}}\'], check=True, capture_output=True)\n'
            "path.write_text(text.replace('mode: fast', 'mode: mine'))\n"
        ),
    )
    conflict = await cli("edit", "cm", "c", "-n", namespace, env={"EDITOR": racing})
    assert conflict.code == 1
    assert "the object has been modified" in conflict.err and "run the command again" in conflict.err
    assert "your edit is saved in" in conflict.err
    async with _client(apiserver) as client:
        cm = await client.get(core_pb2.ConfigMap, "c", namespace)
        assert dict(cm.data) == {"mode": "fast", "other": "x"}


async def test_label_annotate_patch_and_scale(cli: Cli, namespace: str, apiserver: ApiServer) -> None:
    await cli("apply", "-f", "-", "-n", namespace, stdin=DEPLOY)
    assert (
        await cli("label", "deploy", "web", "tier=front", "-n", namespace)
    ).out.strip() == "deployment.apps/web labeled"
    refused = await cli("label", "deploy", "web", "tier=back", "-n", namespace)
    assert refused.code == 1 and "--overwrite" in refused.err
    await cli("label", "deploy", "web", "tier=back", "--overwrite", "-n", namespace)
    await cli("annotate", "deploy", "web", "owner=team-a", "-n", namespace)
    await cli("label", "deploy", "web", "tier-", "-n", namespace)
    patched = await cli("patch", "deploy", "web", "-n", namespace, "-p", '{"spec": {"minReadySeconds": 5}}')
    assert patched.out.strip() == "deployment.apps/web patched"
    scaled = await cli("scale", "deploy", "web", "--replicas", "4", "-n", namespace)
    assert scaled.out.strip() == "deployment.apps/web scaled"
    wrong = await cli("scale", "deploy", "web", "--replicas", "1", "--current-replicas", "2", "-n", namespace)
    assert wrong.code == 1 and "expected 2 replicas, found 4" in wrong.err
    async with _client(apiserver) as client:
        d = await client.get(apps_pb2.Deployment, "web", namespace)
    assert "tier" not in d.metadata.labels and d.metadata.annotations["owner"] == "team-a"
    assert d.spec.min_ready_seconds == 5 and d.spec.replicas == 4


async def test_describe_shows_fields_and_recent_events(cli: Cli, namespace: str, apiserver: ApiServer) -> None:
    async with _client(apiserver) as client:
        target = await client.create(pod("web", namespace, labels={"app": "web"}).pod)
        recorder = EventRecorder(client, "navarch-test")
        recorder.start()
        recorder.event(target, WARNING, "FailedScheduling", "0/3 nodes are available")
        await recorder.stop()
    out = await cli("describe", "pod", "web", "-n", namespace)
    assert out.code == 0
    assert "Name:         web" in out.out and f"Namespace:    {namespace}" in out.out and "app=web" in out.out
    assert "FailedScheduling" in out.out and "0/3 nodes are available" in out.out


async def test_rollout_pause_resume_restart_undo_and_status_without_a_controller(
    cli: Cli, namespace: str, apiserver: ApiServer
) -> None:
    await cli("apply", "-f", "-", "-n", namespace, stdin=DEPLOY)
    assert (
        await cli("rollout", "pause", "deployment", "web", "-n", namespace)
    ).out.strip() == "deployment.apps/web paused"
    assert "already paused" in (await cli("rollout", "pause", "deploy", "web", "-n", namespace)).out
    assert (
        await cli("rollout", "resume", "deployment/web", "-n", namespace)
    ).out.strip() == "deployment.apps/web resumed"
    assert (await cli("rollout", "restart", "deployment", "web", "-n", namespace)).code == 0
    async with _client(apiserver) as client:
        d = await client.get(apps_pb2.Deployment, "web", namespace)
        assert "navarch.io/restartedAt" in d.spec.template.metadata.annotations
        # Two revisions, as the Deployment controller will record them.
        for rev, cmd in ((1, "sleep 1"), (2, "sleep 2")):
            rs = from_manifest(
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": f"web-{rev}",
                        "namespace": namespace,
                        "annotations": {"deployment.kubernetes.io/revision": str(rev)},
                        "ownerReferences": [
                            {
                                "apiVersion": "apps/v1",
                                "kind": "Deployment",
                                "name": "web",
                                "uid": d.metadata.uid,
                                "controller": True,
                            }
                        ],
                    },
                    "spec": {
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "web", "command": cmd.split()}]},
                        },
                    },
                }
            )
            await client.create(rs)
        await client.patch(
            apps_pb2.Deployment,
            "web",
            {"metadata": {"annotations": {"deployment.kubernetes.io/revision": "2"}}},
            namespace,
        )
    history = await cli("rollout", "history", "deployment", "web", "-n", namespace)
    assert [line.split()[0] for line in history.out.splitlines()[2:]] == ["1", "2"]
    undo = await cli("rollout", "undo", "deployment", "web", "--to-revision", "1", "-n", namespace)
    assert undo.out.strip() == "deployment.apps/web rolled back", undo.err
    async with _client(apiserver) as client:
        d = await client.get(apps_pb2.Deployment, "web", namespace)
        assert list(d.spec.template.spec.containers[0].command) == ["sleep", "1"]
    status = await cli("rollout", "status", "deployment", "web", "-n", namespace, "--timeout", "1")
    assert status.code == 1
    assert "Waiting for deployment" in status.out and "timed out" in status.err


async def test_cordon_uncordon_and_drain(cli: Cli, namespace: str, apiserver: ApiServer) -> None:
    node = f"node-{namespace}"
    async with _client(apiserver) as client:
        n = core_pb2.Node()
        n.metadata.name = node
        await client.create(n)
        await client.create(pod("bare", namespace, nodeName=node).pod)
        owned = pod("owned", namespace, nodeName=node).pod
        ref = owned.metadata.owner_references.add(api_version="apps/v1", kind="ReplicaSet", name="rs", uid="u1")
        ref.controller = True
        await client.create(owned)
    assert (await cli("cordon", node)).out.strip() == f"node/{node} cordoned"
    nodes = await cli("get", "nodes")
    assert any(line.split()[:2] == [node, "Unknown,SchedulingDisabled"] for line in nodes.out.splitlines())
    refused = await cli("drain", node)
    assert refused.code == 1 and "--force" in refused.err and f"{namespace}/bare" in refused.err
    drained = await cli("drain", node, "--force", "--grace-period", "0", "--timeout", "20")
    assert drained.code == 0, drained.err
    assert f"node/{node} drained" in drained.out
    assert (await cli("get", "pods", "-n", namespace)).err.startswith("No resources found")
    assert (await cli("uncordon", node)).out.strip() == f"node/{node} uncordoned"


async def test_top_and_raw_say_what_is_missing_in_one_line(cli: Cli, namespace: str) -> None:
    out = await cli("top", "pods", "-n", namespace)
    assert out.code == 1 and "metrics not available yet" in out.err and out.out == ""
    raw = await cli("get", "--raw", "/metrics")
    assert raw.code == 1 and "names no metrics endpoint of the API server" in raw.err and raw.out == ""
    bad = await cli("get", "--raw", "metrics")
    assert bad.code == 2 and "a path starting with /" in bad.err
    none = await cli("get")
    assert none.code == 2 and "Missing argument 'KIND'" in none.err


async def test_logs_and_exec_of_a_missing_pod_name_it(cli: Cli, namespace: str) -> None:
    for args in (["logs", "web", "-n", namespace], ["exec", "web", "-n", namespace, "--", "ls"]):
        out = await cli(*args)
        assert out.code == 1 and f'Pod "{namespace}/web" not found' in out.err and out.out == ""
    both = await cli("logs", "web", "-l", "app=web")
    assert both.code == 1 and "either a pod name or a label selector" in both.err


async def test_config_contexts_and_an_unreachable_server(cli: Cli, tmp_path: Path, apiserver: ApiServer) -> None:
    dead = f"127.0.0.1:{free_port()}"
    env = {"NAVARCH_SERVER": ""}
    await cli("config", "set-cluster", "good", "--server", f"127.0.0.1:{apiserver.port}", env=env)
    await cli("config", "set-cluster", "bad", "--server", dead, env=env)
    await cli("config", "set-context", "good", "--cluster", "good", "--namespace", "navarch-system", env=env)
    await cli("config", "set-context", "bad", "--cluster", "bad", env=env)
    assert (await cli("config", "use-context", "bad", env=env)).out.strip() == 'Switched to context "bad".'
    unreachable = await cli("get", "ns", env=env)
    assert unreachable.code == 1 and f"cannot reach the API server at {dead}" in unreachable.err
    assert len(unreachable.err.strip().splitlines()) == 1
    ok = await cli("--context", "good", "get", "leases", "-o", "json", env=env)
    assert ok.code == 0 and json.loads(ok.out)["kind"] == "List"
    contexts = (await cli("config", "get-contexts", env=env)).out.splitlines()
    assert contexts[0].split() == ["CURRENT", "NAME", "CLUSTER", "USER", "NAMESPACE"]
    assert any(line.split()[:2] == ["*", "bad"] for line in contexts)
    missing = await cli("config", "use-context", "nope", env=env)
    assert missing.code == 1 and 'no context exists with the name: "nope"' in missing.err
    view = await cli("config", "view", env=env)
    assert "current-context: bad" in view.out


async def test_cluster_info_api_resources_version_and_completion(cli: Cli, apiserver: ApiServer) -> None:
    info = await cli("cluster-info")
    assert f"API server 127.0.0.1:{apiserver.port}: healthy; etcd: healthy" in info.out
    assert "navarch-scheduler leader: none (not running)" in info.out
    resources = (await cli("api-resources")).out
    rows = {line.split()[0]: line.split()[1:] for line in resources.splitlines()[1:]}
    assert rows["deployments"][:2] == ["deploy", "apps/v1"]
    assert rows["clusterrolebindings"] == ["rbac.authorization.k8s.io/v1", "false", "ClusterRoleBinding"]
    assert (await cli("version")).out.startswith("Client Version: 0.1.0")
    script = await cli("completion", "bash")
    assert "_NAVARCH_COMPLETE" in script.out
    completed = await cli(
        env={"_NAVARCH_COMPLETE": "bash_complete", "COMP_WORDS": "navarch get dep", "COMP_CWORD": "2"}
    )
    assert "deployments" in completed.out


CRONJOB = """
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "30 2 * * *"
  timeZone: Europe/Berlin
  concurrencyPolicy: Forbid
  jobTemplate:
    metadata: {labels: {app: nightly}}
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: backup, command: ["true"]}]
"""


async def test_cronjobs_print_kubectls_columns_and_make_jobs_on_demand(
    cli: Cli, namespace: str, apiserver: ApiServer
) -> None:
    assert (await cli("apply", "-f", "-", "-n", namespace, stdin=CRONJOB)).out.strip() == (
        "cronjob.batch/nightly created"
    )
    table = (await cli("get", "cj", "-n", namespace)).out.splitlines()
    assert table[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert table[1].split()[:7] == ["nightly", "30", "2", "*", "*", "*", "Europe/Berlin"]
    assert table[1].split()[7:10] == ["False", "0", "<none>"]
    wide = (await cli("get", "cronjobs", "-o", "wide", "-n", namespace)).out.splitlines()
    assert wide[0].split()[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"] and "backup" in wide[1]
    described = (await cli("describe", "cronjob", "nightly", "-n", namespace)).out
    assert "Concurrency Policy:" in described and "Forbid" in described and "Europe/Berlin" in described

    made = await cli("create", "job", "now", "--from=cronjob/nightly", "-n", namespace)
    assert (made.code, made.out.strip()) == (0, "job.batch/now created"), made.err
    async with _client(apiserver) as client:
        job = await client.get(batch_pb2.Job, "now", namespace)
        cj = await client.get(batch_pb2.CronJob, "nightly", namespace)
    assert job.metadata.annotations["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job.metadata.labels["app"] == "nightly"
    assert [(r.kind, r.uid, r.controller) for r in job.metadata.owner_references] == [
        ("CronJob", cj.metadata.uid, True)
    ]
    assert job.spec.template.spec.containers[0].name == "backup"

    missing = await cli("create", "job", "x", "--from=cronjob/none", "-n", namespace)
    assert missing.code == 1 and "not found" in missing.err and "Traceback" not in missing.err
    wrong = await cli("create", "job", "x", "--from=deployment/web", "-n", namespace)
    assert wrong.code != 0 and "cronjob/NAME" in wrong.err

    bad = CRONJOB.replace('"30 2 * * *"', '"30 2 * *"').replace("Europe/Berlin", "../../etc/passwd")
    refused = await cli("apply", "-f", "-", "-n", namespace, stdin=bad.replace("nightly}", "bad}"))
    assert refused.code == 1
    assert "spec.schedule: expected exactly 5 fields" in refused.err
    assert "spec.timeZone" in refused.err
