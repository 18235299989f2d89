"""Validation: each bad input is refused with the object and the field path named."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controlplane.api.defaults import apply_defaults
from controlplane.api.errors import InvalidError
from controlplane.api.objects import from_manifest
from controlplane.api.validation import validate
from tests.helpers import manifest_pod


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": manifest_pod("x", "d")["spec"]},
        },
    }


def _check(doc: dict[str, Any]) -> None:
    obj = from_manifest(doc)
    apply_defaults(obj)
    validate(obj)


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    parts = path.split(".")
    cur: Any = out
    for part in parts[:-1]:
        cur = cur[int(part)] if part.isdigit() else cur[part]
    last = parts[-1]
    cur[int(last) if last.isdigit() else last] = value
    return out


SHA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

POD = manifest_pod("web", "default")

BAD_PODS = [
    ("metadata.name", "Web_1", "metadata.name: 'Web_1' must be a DNS-1123 subdomain"),
    ("metadata.name", "", "metadata.name: required"),
    ("metadata.labels", {"app": "x y"}, "metadata.labels[app]: value 'x y'"),
    ("metadata.labels", {"-bad": "x"}, "metadata.labels: key '-bad'"),
    ("spec.containers", [], "spec.containers: required"),
    ("spec.containers.0.command", [], "spec.containers[0].command: required"),
    ("spec.containers.0.name", "Main", "spec.containers[0].name: 'Main' must be a DNS-1123 label"),
    ("spec.containers.0.resources", {"limits": {"cpu": "lots"}}, "spec.containers[0].resources.limits.cpu"),
    # decimal.Overflow escaped validation as an internal error before quantities were bounded
    (
        "spec.containers.0.resources",
        {"limits": {"cpu": "1e999999999"}},
        "spec.containers[0].resources.limits.cpu: '1e999999999' is not a quantity: exponent",
    ),
    (
        "spec.containers.0.resources",
        {"limits": {"memory": "9" * 5000}},
        "spec.containers[0].resources.limits.memory: '99999999999999999999'... is not a quantity: longer than 64",
    ),
    ("spec.containers.0.resources", {"limits": {"memory": "9" * 30}}, "limits.memory: '" + "9" * 30 + "' is too large"),
    (
        "spec.containers.0.resources",
        {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}},
        "spec.containers[0].resources.requests.memory: must be less than or equal to the limit",
    ),
    ("spec.containers.0.ports", [{"containerPort": 70000}], "spec.containers[0].ports[0].containerPort: 70000"),
    (
        "spec.containers.0.ports",
        [{"containerPort": 0}],
        "spec.containers[0].ports[0].containerPort: 0 (a port the node allocates) needs a name",
    ),
    (
        "spec.containers.0.ports",
        [{"name": "http", "containerPort": 0, "hostPort": 8080}],
        "spec.containers[0].ports[0].hostPort: must be unset when containerPort is 0",
    ),
    ("spec.containers.0.env", [{"name": "1X", "value": "y"}], "spec.containers[0].env[0].name"),
    ("spec.containers.0.reloadPolicy", {"mode": "Sometimes"}, "spec.containers[0].reloadPolicy.mode: 'Sometimes'"),
    (
        "spec.containers.0.reloadPolicy",
        {"mode": "Restart", "signal": "SIGHUP"},
        "spec.containers[0].reloadPolicy.signal: only for mode Signal",
    ),
    ("spec.containers.0.reloadPolicy", {"mode": "Signal", "signal": "SIGKILL"}, "reloadPolicy.signal: 'SIGKILL'"),
    (
        "spec.containers.0.artifacts",
        [{"url": "ftp://x/y", "sha256": SHA}],
        "spec.containers[0].artifacts[0].url: 'ftp://x/y' must be an http, https or file URL",
    ),
    (
        "spec.containers.0.artifacts",
        [{"url": "https://x/y", "sha256": "ABC"}],
        "spec.containers[0].artifacts[0].sha256: must be 64 lower-case hexadecimal digits",
    ),
    (
        "spec.containers.0.artifacts",
        [{"url": "https://x/y", "sha256": SHA, "path": "../y"}],
        "spec.containers[0].artifacts[0].path: '../y' must not contain '..'",
    ),
    (
        "spec.containers.0.artifacts",
        [{"url": "https://x/y", "sha256": SHA, "mode": 2541}],
        "spec.containers[0].artifacts[0].mode: 2541 (0o4755) must be a file mode",
    ),
    (
        "spec.containers.0.artifacts",
        [{"url": "https://x/tool", "sha256": SHA}, {"url": "https://y/tool", "sha256": SHA}],
        "spec.containers[0].artifacts[1].path: 'tool' is the file of another artifact",
    ),
    (
        "spec.containers.0.artifacts",
        [{"url": "https://x/", "sha256": SHA}],
        "spec.containers[0].artifacts[0].path: required",
    ),
    (
        "spec.containers.0.volumeMounts",
        [{"name": "data", "mountPath": "/d"}],
        "spec.containers[0].volumeMounts[0].name: 'data' is not a volume of this pod",
    ),
    ("spec.containers.0.livenessProbe", {"periodSeconds": 3}, "spec.containers[0].livenessProbe: exactly one of"),
    (
        "spec.containers.0.readinessProbe",
        {"tcpSocket": {"port": "web"}},
        "spec.containers[0].readinessProbe.tcpSocket.port: port name 'web' is not a port of this container",
    ),
    ("spec.restartPolicy", "Sometimes", "spec.restartPolicy: 'Sometimes' is not one of Always, OnFailure, Never"),
    ("spec.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}], "spec.tolerations[0].value"),
    ("spec.nodeSelector", {"zone": "a b"}, "spec.nodeSelector[zone]"),
    ("spec.terminationGracePeriodSeconds", -1, "spec.terminationGracePeriodSeconds"),
    ("spec.volumes", [{"name": "v"}], "spec.volumes[0]: exactly one of hostPath"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_PODS, ids=[f"{p}={v!r}"[:60] for p, v, _ in BAD_PODS])
def test_bad_pods_are_refused_naming_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidError) as err:
        _check(_set(POD, path, value))
    assert message in err.value.message
    assert err.value.message.startswith('Pod "default/')


def test_a_named_port_the_node_allocates_passes() -> None:
    _check(_set(POD, "spec.containers.0.ports", [{"name": "http", "containerPort": 0}]))


def test_a_valid_pod_passes() -> None:
    _check(POD)


def test_every_problem_is_reported_at_once() -> None:
    doc = _set(_set(POD, "spec.containers.0.command", []), "spec.restartPolicy", "Sometimes")
    with pytest.raises(InvalidError) as err:
        _check(doc)
    assert "command: required" in err.value.message and "restartPolicy" in err.value.message


BAD_DEPLOYMENTS = [
    ("spec.selector", {}, "spec.selector: required"),
    ("spec.template.metadata.labels", {"app": "other"}, "`selector` does not match template `labels`"),
    ("spec.replicas", -1, "spec.replicas: -1 must be greater than or equal to 0"),
    ("spec.strategy", {"type": "Blue"}, "spec.strategy.type: 'Blue' is not one of RollingUpdate, Recreate"),
    ("spec.strategy", {"rollingUpdate": {"maxSurge": "x%"}}, "spec.strategy.rollingUpdate.maxSurge"),
    ("spec.template.spec.restartPolicy", "Never", "spec.template.spec.restartPolicy: 'Never' is not one of Always"),
    ("spec.template.spec.containers.0.command", [], "spec.template.spec.containers[0].command: required"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_DEPLOYMENTS, ids=[p for p, _, _ in BAD_DEPLOYMENTS])
def test_bad_deployments_are_refused_naming_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidError) as err:
        _check(_set(_deployment(), path, value))
    assert message in err.value.message


def test_job_needs_a_restart_policy_that_ends() -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once", "namespace": "default", "uid": "u1"},
        "spec": {"template": {"spec": manifest_pod("x", "d")["spec"]}},
    }
    with pytest.raises(InvalidError, match=r"spec.template.spec.restartPolicy: 'Always' is not one of OnFailure"):
        _check(job)
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"  # type: ignore[index]
    _check(job)  # the selector is generated from the uid


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "1web", "namespace": "d"},
                "spec": {"ports": [{"port": 80}]},
            },
            "must be a DNS-1035 label",
        ),
        (
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "d"}, "spec": {}},
            "spec.ports: required",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": "d"},
                "spec": {"ports": [{"port": 80, "targetPort": 0}]},
            },
            "spec.ports[0].targetPort",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "d"},
                "data": {"a b": "x"},
            },
            "data[a b]",
        ),
        (
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "namespace": "x"}},
            "metadata.namespace: must be empty",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "n1"},
                "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]},
            },
            "spec.taints[0].effect",
        ),
        (
            {
                "apiVersion": "coordination/v1",
                "kind": "Lease",
                "metadata": {"name": "l", "namespace": "d"},
                "spec": {"leaseDurationSeconds": 0},
            },
            "spec.leaseDurationSeconds",
        ),
        ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}, "must be a DNS-1123 label"),
    ],
    ids=["svc-name", "svc-ports", "svc-target", "cm-key", "node-ns", "taint", "lease", "ns-name"],
)
def test_other_kinds_are_validated(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidError) as err:
        _check(doc)
    assert message in err.value.message


def test_objects_over_one_mebibyte_are_refused() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "big", "namespace": "d"},
        "data": {"blob": "x" * (1024 * 1024 + 1)},
    }
    with pytest.raises(InvalidError, match="the limit is 1048576"):
        _check(doc)


def test_a_job_name_longer_than_a_label_value_is_refused_naming_the_name() -> None:
    """Found by the property oracle: the refusal named the job-name label the server had added itself."""
    job = from_manifest(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j" * 64, "namespace": "default", "uid": "u"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "command": ["x"]}]}}},
        }
    )
    apply_defaults(job)
    with pytest.raises(InvalidError, match=r"metadata\.name: must be no more than 63 characters") as err:
        validate(job)
    assert "spec.template.metadata.labels" not in err.value.message
