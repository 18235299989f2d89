"""docs/api.md's immutability rules beyond Pod and Service, and ``dryRun: All`` on Update, Patch and Delete:
each refused change names its field and leaves the stored object as it was; each dry run answers as the real
call would and stores nothing (plausible bugs: a rule checked on Update but not on Patch, which goes through
the same strategy only if wired so; a dry-run Delete that deletes; a dry-run Patch that bumps the
resourceVersion)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controlplane.api.errors import InvalidError
from controlplane.api.objects import from_manifest, to_manifest
from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig


def _workload(kind: str, api_version: str, name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"containers": [{"name": "m", "command": ["true"]}]}
    template: dict[str, Any] = {"metadata": {"labels": {"app": name}}, "spec": pod_spec}
    body: dict[str, Any] = {"selector": {"matchLabels": {"app": name}}, "template": template, **spec}
    if kind == "Job":
        body = {"template": {"spec": {**pod_spec, "restartPolicy": "Never"}}, **spec}
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": body}


# (manifest maker, merge patch that must be refused, the field the error must name)
CASES = [
    pytest.param(
        lambda ns: _workload("ReplicaSet", "apps/v1", "rs", ns),
        {
            "spec": {
                "selector": {"matchLabels": {"app": "other"}},
                "template": {"metadata": {"labels": {"app": "other"}}},
            }
        },
        "spec.selector",
        id="replicaset-selector",
    ),
    pytest.param(
        lambda ns: _workload("Deployment", "apps/v1", "dep", ns),
        {"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}}}}},
        "spec.selector",
        id="deployment-selector",
    ),
    pytest.param(
        lambda ns: _workload("DaemonSet", "apps/v1", "ds", ns),
        {"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}}}}},
        "spec.selector",
        id="daemonset-selector",
    ),
    pytest.param(
        lambda ns: _workload("Job", "batch/v1", "job", ns, completions=2),
        {"spec": {"completions": 3}},
        "spec.completions",
        id="job-completions",
    ),
    pytest.param(
        lambda ns: _workload("Job", "batch/v1", "job2", ns),
        {"spec": {"template": {"spec": {"containers": [{"name": "m", "command": ["false"]}]}}}},
        "spec.template",
        id="job-template",
    ),
    pytest.param(
        lambda ns: {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "frozen", "namespace": ns},
            "immutable": True,
            "data": {"a": "1"},
        },
        {"data": {"a": "2"}},
        "data",
        id="immutable-configmap-data",
    ),
    pytest.param(
        lambda ns: {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "frozen2", "namespace": ns},
            "immutable": True,
            "data": {"a": "1"},
        },
        {"immutable": False},
        "immutable",
        id="immutable-configmap-unfreeze",
    ),
    pytest.param(
        lambda ns: {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sealed", "namespace": ns},
            "immutable": True,
            "stringData": {"p": "x"},
        },
        {"stringData": {"p": "y"}},
        "data",
        id="immutable-secret-data",
    ),
    pytest.param(
        lambda ns: {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "typed", "namespace": ns},
            "type": "Opaque",
            "stringData": {"p": "x"},
        },
        {"type": "kubernetes.io/basic-auth"},
        "type",
        id="secret-type",
    ),
]


@pytest.fixture
async def client(apiserver: ApiServer) -> AsyncIterator[ApiClient]:
    async with ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"])) as c:
        yield c


@pytest.mark.parametrize(("make", "patch", "field"), CASES)
async def test_an_immutable_field_is_refused_by_patch_and_update(
    client: ApiClient, namespace: str, make: Any, patch: dict[str, Any], field: str
) -> None:
    created = await client.create(from_manifest(make(namespace)))
    kind, name = created.DESCRIPTOR.name, created.metadata.name
    with pytest.raises(InvalidError, match=re.escape(f"{field}: field is immutable")):
        await client.patch(kind, name, patch, namespace)
    # The same change as a whole-object Update.
    current = await client.get_by_name(kind, name, namespace)
    changed = from_manifest(_merged(to_manifest(current), patch, kind, created))
    with pytest.raises(InvalidError, match=re.escape(f"{field}: field is immutable")):
        await client.update(changed)
    after = await client.get_by_name(kind, name, namespace)
    assert after.metadata.resource_version == current.metadata.resource_version


def _merged(doc: dict[str, Any], patch: dict[str, Any], kind: str, created: Any) -> dict[str, Any]:
    from controlplane.api import kinds
    from controlplane.api.patches import merge_patch

    info = kinds.of_message(created)
    out: dict[str, Any] = merge_patch(doc, patch)
    out["apiVersion"], out["kind"] = info.api_version, info.kind
    if "stringData" in out:  # Secrets: stringData is write-only; the data it fills is what changes
        for k, v in out.pop("stringData").items():
            out.setdefault("data", {})[k] = __import__("base64").b64encode(v.encode()).decode()
    return out


async def test_dry_runs_of_update_patch_and_delete_store_nothing(client: ApiClient, namespace: str) -> None:
    cm = await client.create(
        from_manifest(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": namespace},
                "data": {"a": "1"},
            }
        )
    )
    rv = cm.metadata.resource_version
    patched = await client.patch("ConfigMap", "c", {"data": {"a": "2"}}, namespace, dry_run=True)
    assert patched.data["a"] == "2"  # the answer is what the change would make
    changed = await client.get_by_name("ConfigMap", "c", namespace)
    changed.data["a"] = "3"
    updated = await client.update(changed, dry_run=True)
    assert updated.data["a"] == "3"
    _, gone = await client.delete("ConfigMap", "c", namespace, dry_run=True)
    assert gone
    stored = await client.get_by_name("ConfigMap", "c", namespace)
    assert stored.data["a"] == "1" and stored.metadata.resource_version == rv
    # Invalid input is refused by a dry run as by the real call.
    with pytest.raises(InvalidError, match=r"metadata\.labels"):
        await client.patch(
            "ConfigMap", "c", json.dumps({"metadata": {"labels": {"bad key!": "x"}}}), namespace, dry_run=True
        )
