"""kubectl habits: --dry-run=client, --validate, warnings, get all / --no-headers / --sort-by, diff, and a
human describe for every kind. The real ``navarch`` command against a real API server."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from controlplane.api import kinds
from controlplane.api.pb import core_pb2
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig
from tests.cli.conftest import Cli

CORPUS = Path(__file__).resolve().parents[1] / "manifests" / "kubernetes"

WEB = textwrap.dedent(
    """\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: web, labels: {{app: web}}}}
    spec:
      replicas: {replicas}
      selector: {{matchLabels: {{app: web}}}}
      template:
        metadata: {{labels: {{app: web}}}}
        spec:
          containers:
          - {{name: web, image: nginx, imagePullPolicy: Always, command: [sleep, "3600"]}}
    """
)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


async def test_client_dry_run_sends_nothing_and_prints_what_would_be_sent(
    cli: Cli, namespace: str, tmp_path: Path
) -> None:
    f = write(tmp_path, "web.yaml", WEB.format(replicas=2))
    # An unreachable server: a client dry run must not need it.
    out = await cli("apply", "-f", f, "-n", namespace, "--dry-run=client", env={"NAVARCH_SERVER": "127.0.0.1:9"})
    assert out.code == 0, out.err
    assert "kind: Deployment" in out.out and "replicas: 2" in out.out and "last-applied-configuration" in out.out
    assert "imagePullPolicy" not in out.out  # what would be sent: the dropped field is not in it
    assert "imagePullPolicy: ignored" in out.err and "image: ignored" in out.err
    created = await cli("create", "-f", f, "-n", namespace, "--dry-run=client", "-o", "name")
    assert created.code == 0 and created.out.strip() == "deployment.apps/web (dry run)"
    got = await cli("get", "deployment", "web", "-n", namespace)
    assert got.code != 0 and "not found" in got.err
    # delete --dry-run=client names what it would delete and deletes nothing
    assert (await cli("apply", "-f", f, "-n", namespace)).code == 0
    gone = await cli("delete", "-f", f, "-n", namespace, "--dry-run=client")
    assert gone.code == 0 and gone.out.strip() == 'deployment.apps "web" deleted (dry run)'
    assert (await cli("get", "deployment", "web", "-n", namespace)).code == 0


async def test_warnings_from_the_cli_and_from_the_server(cli: Cli, namespace: str, tmp_path: Path) -> None:
    f = write(tmp_path, "web.yaml", WEB.format(replicas=1))
    out = await cli("apply", "-f", f, "-n", namespace)
    assert out.code == 0 and "deployment.apps/web created" in out.out
    warnings = [line for line in out.err.splitlines() if line.startswith("Warning: ")]
    # imagePullPolicy is dropped by the CLI (not in the schema); image is kept but ignored, and the server says so.
    assert any("spec.template.spec.containers[0].imagePullPolicy: ignored" in w for w in warnings), out.err
    assert any("spec.template.spec.containers[0].image: ignored" in w for w in warnings), out.err


async def test_validate_strict_warn_ignore(cli: Cli, namespace: str, tmp_path: Path) -> None:
    typo = WEB.format(replicas=1).replace("replicas: 1", "replicas: 1\n  replica: 2")
    f = write(tmp_path, "typo.yaml", typo)
    strict = await cli("apply", "-f", f, "-n", namespace)
    assert strict.code != 0 and 'Deployment "web": spec.replica: unknown field' in strict.err
    assert (await cli("get", "deployment", "web", "-n", namespace)).code != 0  # nothing half-written
    warn = await cli("apply", "-f", f, "-n", namespace, "--validate=warn")
    assert warn.code == 0 and "Warning: " in warn.err and 'unknown field "spec.replica"' in warn.err
    ignore = await cli("apply", "-f", f, "-n", namespace, "--validate=false")
    assert ignore.code == 0 and "spec.replica" not in ignore.err
    bad = await cli("apply", "-f", f, "-n", namespace, "--validate=maybe")
    assert bad.code == 2 and "--validate" in bad.err


async def test_the_whole_corpus_applies(cli: Cli, namespace: str) -> None:
    out = await cli("apply", "-f", str(CORPUS))  # into the default namespace, as a user would
    assert out.code == 0, out.err
    assert out.out.count(" created") + out.out.count(" unchanged") >= 25, out.out
    assert "Traceback" not in out.err


async def test_get_all_no_headers_and_sort_by(cli: Cli, namespace: str, tmp_path: Path) -> None:
    services = "".join(
        f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{port}}}\nspec:\n  ports: [{{port: {port}}}]\n"
        for port in (8080, 80, 443)
    )
    job = "---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: once}\nspec:\n  template:\n    spec:\n"
    job += "      restartPolicy: Never\n      containers: [{name: m, command: ['true']}]\n"
    cm = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-in-all}\n"
    assert (await cli("apply", "-f", write(tmp_path, "x.yaml", services + job + cm), "-n", namespace)).code == 0
    every = await cli("get", "all", "-n", namespace)
    assert every.code == 0, every.err
    assert "service/s80" in every.out and "job.batch/once" in every.out and "not-in-all" not in every.out
    assert every.out.count("NAME") == 2  # one table per kind that has objects
    bare = await cli("get", "services", "-n", namespace, "--no-headers", "-o", "wide")
    assert bare.code == 0 and "NAME" not in bare.out and len(bare.out.splitlines()) == 3
    ordered = await cli("get", "services", "-n", namespace, "--sort-by", "{.spec.ports[0].port}", "--no-headers")
    assert [line.split()[0] for line in ordered.out.splitlines()] == ["s80", "s443", "s8080"]  # numeric, not text
    by_name = await cli("get", "svc", "-n", namespace, "--sort-by", ".metadata.name", "-o", "name")
    assert by_name.out.split() == ["service/s443", "service/s80", "service/s8080"]
    junk = await cli("get", "svc", "-n", namespace, "--sort-by", "spec[")
    assert junk.code == 2 and "--sort-by" in junk.err


async def test_diff_shows_what_apply_would_change(cli: Cli, namespace: str, tmp_path: Path) -> None:
    f = write(tmp_path, "web.yaml", WEB.format(replicas=1))
    new = await cli("diff", "-f", f, "-n", namespace)
    assert new.code == 1 and f"merged/apps.v1.Deployment.{namespace}.web" in new.out and "+  replicas: 1" in new.out
    assert (await cli("apply", "-f", f, "-n", namespace)).code == 0
    same = await cli("diff", "-f", f, "-n", namespace)
    assert same.code == 0 and same.out == "", same.out + same.err
    write(tmp_path, "web.yaml", WEB.format(replicas=3))
    changed = await cli("diff", "-f", f, "-n", namespace)
    assert changed.code == 1
    assert "-  replicas: 1" in changed.out and "+  replicas: 3" in changed.out
    # diff changed nothing
    got = await cli("get", "deploy", "web", "-n", namespace, "-o", "jsonpath={.spec.replicas}")
    assert got.out.strip() == "1"
    broken = await cli("diff", "-f", f, "-n", namespace, env={"NAVARCH_SERVER": "127.0.0.1:9"})
    assert broken.code == 2  # an error is not "different"


MINIMAL: dict[str, str] = {
    "Namespace": "metadata: {name: NAME}",
    "Node": "metadata: {name: NAME}\nspec: {taints: [{key: k, value: v, effect: NoSchedule}]}",
    "Pod": "metadata: {name: NAME}\nspec: {containers: [{name: m, command: [sleep, '1'], ports: [{containerPort: 80}]}]}",  # noqa: E501
    "ReplicaSet": "metadata: {name: NAME}\nspec: {selector: {matchLabels: {a: b}}, template: "
    "{metadata: {labels: {a: b}}, spec: {containers: [{name: m, command: ['true']}]}}}",
    "Deployment": "metadata: {name: NAME}\nspec: {selector: {matchLabels: {a: b}}, template: "
    "{metadata: {labels: {a: b}}, spec: {containers: [{name: m, command: ['true']}]}}}",
    "DaemonSet": "metadata: {name: NAME}\nspec: {selector: {matchLabels: {a: b}}, template: "
    "{metadata: {labels: {a: b}}, spec: {containers: [{name: m, command: ['true']}]}}}",
    "Job": "metadata: {name: NAME}\nspec: {template: {spec: {restartPolicy: Never, containers: "
    "[{name: m, command: ['true']}]}}}",
    "Service": "metadata: {name: NAME}\nspec: {selector: {a: b}, ports: [{port: 80, name: http}]}",
    "Endpoints": "metadata: {name: NAME}\nsubsets: [{addresses: [{ip: 127.0.0.9}], ports: [{port: 80}]}]",
    "ConfigMap": "metadata: {name: NAME}\ndata: {greeting: hello}",
    "Secret": "metadata: {name: NAME}\nstringData: {password: hunter2}",
    "Event": "metadata: {name: NAME}\ninvolvedObject: {kind: Pod, name: x}\nreason: Tested\nmessage: hi",
    "Lease": "metadata: {name: NAME}\nspec: {holderIdentity: me, leaseDurationSeconds: 10}",
    "Role": "metadata: {name: NAME}\nrules: [{apiGroups: [''], resources: [pods], verbs: [get]}]",
    "ClusterRole": "metadata: {name: NAME}\nrules: [{apiGroups: [''], resources: [pods], verbs: [get]}]",
    "RoleBinding": "metadata: {name: NAME}\nsubjects: [{kind: User, name: jane}]\n"
    "roleRef: {kind: Role, name: r, apiGroup: rbac.authorization.k8s.io}",
    "ClusterRoleBinding": "metadata: {name: NAME}\nsubjects: [{kind: User, name: jane}]\n"
    "roleRef: {kind: ClusterRole, name: r, apiGroup: rbac.authorization.k8s.io}",
    "CronJob": "metadata: {name: NAME}\nspec: {schedule: '@hourly', jobTemplate: {spec: {template: {spec: "
    "{restartPolicy: Never, containers: [{name: m, command: ['true']}]}}}}}",
    "StatefulSet": "metadata: {name: NAME}\nspec: {selector: {matchLabels: {a: b}}, template: "
    "{metadata: {labels: {a: b}}, spec: {containers: [{name: m, command: ['true'], volumeMounts: "
    "[{name: data, mountPath: /data}]}]}}, volumeClaimTemplates: [{metadata: {name: data}, spec: "
    "{accessModes: [ReadWriteOnce], storageClassName: local, resources: {requests: {storage: 1Gi}}}}]}",
    "ControllerRevision": "metadata: {name: NAME}\nrevision: 1",
    "PersistentVolumeClaim": "metadata: {name: NAME}\nspec: {accessModes: [ReadWriteOnce], storageClassName: "
    "local, resources: {requests: {storage: 1Gi}}}",
    "PersistentVolume": "metadata: {name: NAME}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], "
    "local: {path: NAME}, nodeAffinity: {required: {nodeSelectorTerms: [{matchFields: [{key: metadata.name, "
    "operator: In, values: [n1]}]}]}}}",
    "PodDisruptionBudget": "metadata: {name: NAME}\nspec: {minAvailable: 1, selector: {matchLabels: {a: b}}}",
    "PriorityClass": "metadata: {name: NAME}\nvalue: 100\ndescription: for tests",
    "HorizontalPodAutoscaler": "metadata: {name: NAME}\nspec: {scaleTargetRef: {kind: Deployment, name: web}, "
    "maxReplicas: 3, metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, "
    "averageUtilization: 50}}}]}",
}

# A line each describer must print for its kind (beyond Name, Labels and Events).
SIGNATURE = {
    "Pod": "Containers:",
    "Deployment": "StrategyType:",
    "ReplicaSet": "Pod Template:",
    "DaemonSet": "Desired Number of Nodes Scheduled:",
    "Job": "Pods Statuses:",
    "Service": "Endpoints:",
    "Node": "Taints:",
    "ConfigMap": "greeting:",
    "Secret": "password:  7 bytes",
    "Lease": "Holder Identity:",
    "Role": "Verbs:",
    "CronJob": "Concurrency Policy:",
    "StatefulSet": "Volume Claims:",
    "PersistentVolumeClaim": "StorageClass:",
    "PersistentVolume": "Reclaim Policy:",
    "PodDisruptionBudget": "Allowed disruptions:",
    "HorizontalPodAutoscaler": "Max replicas:",
}


def test_every_kind_has_a_minimal_manifest_here() -> None:
    assert set(MINIMAL) == {k.kind for k in kinds.KINDS}


@pytest.mark.parametrize("kind", sorted(MINIMAL))
async def test_describe_is_a_human_summary_for_every_kind(cli: Cli, namespace: str, tmp_path: Path, kind: str) -> None:
    info = kinds.for_kind(next(k.api_version for k in kinds.KINDS if k.kind == kind), kind)
    name = f"d-{namespace}" if not info.namespaced else "described"
    doc = f"apiVersion: {info.api_version}\nkind: {kind}\n" + MINIMAL[kind].replace("NAME", name) + "\n"
    assert (await cli("apply", "-f", write(tmp_path, "o.yaml", doc), "-n", namespace)).code == 0
    out = await cli("describe", info.plural, name, "-n", namespace)
    assert out.code == 0, out.err
    lines = out.out.splitlines()
    assert lines[0].split() == ["Name:", name]
    assert any(line.startswith("Labels:") for line in lines)
    assert lines[-1].startswith("Events:") or any(line.startswith("Events:") for line in lines[-4:])
    # A summary, not a YAML dump of the object.
    assert "apiVersion" not in out.out and "spec:" not in out.out and "status:" not in out.out
    if kind in SIGNATURE:
        assert SIGNATURE[kind] in out.out, out.out
    if kind == "Secret":
        assert "hunter2" not in out.out


async def test_patch_refuses_a_typo_unless_told(cli: Cli, namespace: str, tmp_path: Path) -> None:
    f = write(tmp_path, "web.yaml", WEB.format(replicas=1))
    assert (await cli("apply", "-f", f, "-n", namespace)).code == 0
    typo = await cli("patch", "deploy", "web", "-n", namespace, "-p", '{"spec": {"replica": 3}}')
    assert typo.code != 0 and "spec.replica: unknown field" in typo.err
    warned = await cli("patch", "deploy", "web", "-n", namespace, "-p", '{"spec": {"replica": 3}}', "--validate=warn")
    assert warned.code == 0 and 'unknown field "spec.replica"' in warned.err


async def test_the_get_pods_table_reads_the_pods_status(cli: Cli, namespace: str, apiserver: ApiServer) -> None:
    """READY counts ready containers, STATUS prefers a container's waiting reason (CrashLoopBackOff) over the
    phase and says Terminating once deletion began, RESTARTS adds up every container (plausible bugs: READY
    from the spec, the phase shown while a container crash-loops)."""
    async with ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"])) as client:
        pod = core_pb2.Pod()
        pod.metadata.name, pod.metadata.namespace = "crashy", namespace
        pod.spec.node_name = "somewhere"
        pod.spec.containers.add(name="a", command=["true"])
        pod.spec.containers.add(name="b", command=["true"])
        created = await client.create(pod)
        created.status.phase = "Running"
        a = created.status.container_statuses.add(name="a", ready=True, restart_count=1)
        a.state.running.SetInParent()
        b = created.status.container_statuses.add(name="b", ready=False, restart_count=3)
        b.state.waiting.reason = "CrashLoopBackOff"
        await client.update_status(created)
        out = await cli("get", "pods", "-n", namespace, "-o", "wide")
        header, row = out.out.splitlines()
        # kubectl's columns, and Navarch's PORTS (the ports the processes got, see dynamic ports).
        assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "PORTS"]
        assert row.split()[:4] == ["crashy", "1/2", "CrashLoopBackOff", "4"] and row.split()[-2:] == [
            "somewhere",
            "<none>",
        ]
        await client.delete(core_pb2.Pod, "crashy", namespace)  # bound to a node: graceful, it lingers
        out = await cli("get", "pods", "-n", namespace, "--no-headers")
        assert out.out.split()[2] == "Terminating"
