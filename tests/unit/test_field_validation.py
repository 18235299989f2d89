"""Manifests as Kubernetes users write them: fields Kubernetes defines that Navarch does not model are accepted
with a warning naming their path; fields Kubernetes does not define are refused (Strict) with their path, or
dropped (Warn with a warning, Ignore silently). The corpus in tests/manifests/kubernetes is written the way
Kubernetes users write manifests (kubectl create --dry-run output, Helm-style Deployments, JSON, Lists)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import manifests
from controlplane.api import kinds
from controlplane.api.errors import InvalidError
from controlplane.api.fieldvalidation import IGNORED_MODELLED, KUBERNETES_FIELDS, ignored_field_warnings
from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2

CORPUS = Path(__file__).resolve().parents[1] / "manifests" / "kubernetes"
FILES = sorted(CORPUS.iterdir())

# Warnings each of these files must produce (a path each), whatever else they produce.
EXPECTED = {
    "02-deployment-full.yaml": [
        "spec.template.spec.dnsPolicy",
        "spec.template.spec.automountServiceAccountToken",
        "spec.template.spec.securityContext.fsGroup",
        "spec.template.spec.containers[0].imagePullPolicy",
        "spec.template.spec.containers[0].securityContext.capabilities",
        "spec.template.spec.containers[0].terminationMessagePolicy",
    ],
    "03-service-clusterip.yaml": ["spec.ipFamilies", "spec.ipFamilyPolicy", "spec.internalTrafficPolicy"],
    "09-job-parallel.yaml": ["spec.podFailurePolicy"],
    "10-daemonset.yaml": ["spec.template.spec.hostNetwork", "spec.template.spec.containers[0].resources.claims"],
    "14-pod-init-containers.yaml": ["spec.readinessGates", "spec.containers[0].stdin"],
    "19-deployment.json": ["spec.template.spec.containers[0].imagePullPolicy"],
}


def _schema_fields(name: str) -> set[str]:
    from controlplane.api.pb import apps_pb2, batch_pb2, meta_pb2, rbac_pb2

    for module in (core_pb2, apps_pb2, batch_pb2, meta_pb2, rbac_pb2):
        desc = module.DESCRIPTOR.message_types_by_name.get(name)
        if desc is not None:
            return {f.json_name for f in desc.fields}
    raise AssertionError(f"no schema message {name}")


def test_the_corpus_is_big_enough() -> None:
    docs = [d for f in FILES for d in manifests.load([str(f)])]
    assert len(FILES) >= 20 and len(docs) >= 25
    assert {kinds.of_message(d.obj).kind for d in docs} >= {"Deployment", "Job", "Service", "ConfigMap", "DaemonSet"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_corpus_manifest_loads_strictly(path: Path) -> None:
    docs = manifests.load([str(path)])
    warnings = [w for d in docs for w in d.warnings]
    for field in EXPECTED.get(path.name, []):
        assert any(f": {field}: ignored (" in w for w in warnings), (field, warnings)
    for d in docs:
        # What apply records and patches no longer holds what was dropped.
        assert "status" not in d.raw or d.raw["status"] == {}


def test_kubernetes_fields_are_not_in_the_schema_and_name_real_types() -> None:
    for type_name, fields in KUBERNETES_FIELDS.items():
        overlap = set(fields) & _schema_fields(type_name)
        assert not overlap, f"{type_name} models {overlap}: take them out of KUBERNETES_FIELDS"
    for type_name, fields in IGNORED_MODELLED.items():
        assert set(fields) <= _schema_fields(type_name)


def _deployment() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((CORPUS / "01-deployment-dry-run-output.yaml").read_text())
    return doc


@pytest.mark.parametrize(
    ("where", "path"),
    [
        (lambda d: d["spec"]["template"]["spec"]["containers"][0], "spec.template.spec.containers[0].comand"),
        (lambda d: d["spec"], "spec.replica"),
        (lambda d: d["metadata"], "metadata.lables"),
        (lambda d: d["spec"]["template"]["spec"], "spec.template.spec.nodeSelectors"),
    ],
)
def test_a_field_kubernetes_does_not_define_is_refused_with_its_path(where: Any, path: str) -> None:
    doc = _deployment()
    where(doc)[path.rsplit(".", 1)[1]] = "x"
    with pytest.raises(InvalidError, match=re.escape(f'Deployment "web": {path}: unknown field')):
        from_manifest(doc)
    warned: list[str] = []
    from_manifest(copy.deepcopy(doc), field_validation="Warn", warnings=warned)
    assert warned == [f'Deployment "web": unknown field "{path}"']
    silent: list[str] = []
    from_manifest(copy.deepcopy(doc), field_validation="Ignore", warnings=silent)
    assert silent == []


def test_every_unknown_field_is_named_at_once() -> None:
    doc = _deployment()
    doc["spec"]["replica"] = 1
    doc["spec"]["template"]["spec"]["containers"][0]["comand"] = ["x"]
    with pytest.raises(InvalidError) as err:
        from_manifest(doc)
    assert "spec.replica: unknown field" in err.value.message
    assert "spec.template.spec.containers[0].comand: unknown field" in err.value.message


def test_null_means_unset() -> None:
    doc = _deployment()
    doc["spec"]["template"]["spec"]["nodeSelector"] = None
    doc["metadata"]["labels"] = None
    obj = from_manifest(doc)
    assert not obj.metadata.labels


def test_fields_kept_but_not_acted_on_are_reported_for_the_server_to_warn() -> None:
    pod = core_pb2.Pod()
    pod.spec.containers.add(name="a", image="nginx", command=["true"])
    pod.spec.containers.add(name="b", command=["true"])
    pod.spec.priority_class_name = "high"  # acted on since PriorityClasses exist: no warning
    pod.spec.share_process_namespace = True
    assert ignored_field_warnings(pod) == [
        "spec.containers[0].image: ignored (no container runtime: a container is command + args on the host)",
        "spec.shareProcessNamespace: ignored (not implemented by Navarch)",
    ]
    assert ignored_field_warnings(core_pb2.ConfigMap()) == []


def test_docs_api_lists_every_field_that_is_dropped_or_ignored() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    for table in (KUBERNETES_FIELDS, IGNORED_MODELLED):
        for type_name, fields in table.items():
            rows = [line for line in doc.splitlines() if line.startswith(f"| {type_name} |")]
            assert any(all(f"`{f}`" in row for f in fields) for row in rows), f"docs/api.md: {type_name} misses fields"
