"""Property: random and malformed objects get INVALID_ARGUMENT-family codes, never INTERNAL, and nothing
invalid is ever stored."""

from __future__ import annotations

import copy
import json
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.api.errors import InvalidError
from controlplane.api.objects import from_manifest, to_manifest, unwrap, wrap
from controlplane.api.pb import api_pb2
from controlplane.api.validation import validate
from tests.helpers import api_stub, manifest_pod

ACCEPTABLE = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.PERMISSION_DENIED,
}

NAMESPACE = "prop"

BASES: dict[str, dict[str, Any]] = {
    "pod": manifest_pod("p", NAMESPACE, labels={"app": "a"}),
    "deployment": {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "a"}},
            "template": {
                "metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{"name": "c", "command": ["sleep", "1"]}]},
            },
        },
    },
    "service": {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": NAMESPACE},
        "spec": {"selector": {"app": "a"}, "ports": [{"port": 80, "targetPort": 8080}]},
    },
    "configmap": {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": NAMESPACE},
        "data": {"k": "v"},
    },
    "job": {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": NAMESPACE},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "command": ["true"]}], "restartPolicy": "Never"}}},
    },
}

PATHS: dict[str, list[str]] = {
    "pod": [
        "metadata.name",
        "metadata.labels",
        "metadata.annotations",
        "metadata.generateName",
        "metadata.finalizers",
        "spec.containers.0.name",
        "spec.containers.0.command",
        "spec.containers.0.args",
        "spec.containers.0.env",
        "spec.containers.0.ports",
        "spec.containers.0.resources.limits",
        "spec.containers.0.workingDir",
        "spec.containers.0.volumeMounts",
        "spec.restartPolicy",
        "spec.nodeSelector",
        "spec.nodeName",
        "spec.tolerations",
        "spec.volumes",
        "spec.terminationGracePeriodSeconds",
        "spec.containers",
        "spec.initContainers",
        "spec.hostname",
        "status.phase",
    ],
    "deployment": [
        "metadata.name",
        "spec.replicas",
        "spec.selector.matchLabels",
        "spec.selector.matchExpressions",
        "spec.template.metadata.labels",
        "spec.strategy.type",
        "spec.strategy.rollingUpdate.maxSurge",
        "spec.template.spec.containers.0.command",
        "spec.minReadySeconds",
        "spec.progressDeadlineSeconds",
        "spec.revisionHistoryLimit",
    ],
    "service": [
        "metadata.name",
        "spec.ports",
        "spec.ports.0.port",
        "spec.ports.0.targetPort",
        "spec.clusterIP",
        "spec.type",
        "spec.selector",
        "spec.sessionAffinity",
    ],
    "configmap": ["metadata.name", "data", "metadata.namespace", "metadata.labels"],
    "job": [
        "spec.parallelism",
        "spec.completions",
        "spec.backoffLimit",
        "spec.template.spec.restartPolicy",
        "spec.completionMode",
        "spec.activeDeadlineSeconds",
    ],
}

scalars = st.one_of(
    st.text(max_size=70),
    st.sampled_from(
        [
            "",
            "a",
            "web",
            "-x-",
            "A_B",
            "a" * 64,
            "None",
            "25%",
            "500m",
            "1Gi",
            "1.5.6.7",
            "Always",
            "Never",
            "Exists",
            "http",
            "10.0.0.1",
            "0",
            "-1",
        ]
    ),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(
                st.text(max_size=20), st.sampled_from(["name", "port", "key", "value", "command", "operator", "effect"])
            ),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=6,
)


def _mutate(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set ``value`` at a dotted path, creating missing mappings; paths through scalars are left alone."""
    out = copy.deepcopy(doc)
    cur: Any = out
    parts = path.split(".")
    for part in parts[:-1]:
        if isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        elif isinstance(cur, dict):
            cur = cur.setdefault(part, {})
        else:
            return out
    last = parts[-1]
    if isinstance(cur, dict):
        cur[last] = value
    elif isinstance(cur, list) and last.isdigit() and int(last) < len(cur):
        cur[int(last)] = value
    return out


mutations = st.sampled_from(sorted(BASES)).flatmap(
    lambda kind: st.tuples(
        st.just(kind),
        st.lists(st.tuples(st.sampled_from(PATHS[kind]), values), min_size=1, max_size=3),
    )
)


@pytest.fixture(scope="module")
async def prop_namespace(channel: grpc.aio.Channel) -> str:
    api = api_stub(channel)
    try:
        await api.Create(
            api_pb2.CreateRequest(
                object=wrap(from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}))
            )
        )
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    return NAMESPACE


async def _check_call(call: Any) -> api_pb2.Object | None:
    try:
        return await call  # type: ignore[no-any-return]
    except grpc.aio.AioRpcError as err:
        assert err.code() in ACCEPTABLE, f"{err.code().name}: {err.details()}"
        assert err.details(), "every error carries a message"
        return None


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutations)
async def test_random_objects_never_yield_internal_or_store_invalid_objects(
    channel: grpc.aio.Channel, prop_namespace: str, case: tuple[str, list[tuple[str, Any]]]
) -> None:
    api = api_stub(channel)
    kind, changes = case
    doc = BASES[kind]
    for path, value in changes:
        doc = _mutate(doc, path, value)
    try:
        message = from_manifest(json.loads(json.dumps(doc)))
    except InvalidError:
        return  # not expressible as the schema: the CLI refuses it before sending
    created = await _check_call(api.Create(api_pb2.CreateRequest(object=wrap(message))))
    if created is not None:
        stored_obj = unwrap(created)
        validate(stored_obj)  # what was stored is valid
        # Now update the stored object with the same random changes applied on top.
        current = to_manifest(stored_obj)
        for path, value in changes:
            current = _mutate(current, path, value)
        try:
            changed = from_manifest(json.loads(json.dumps(current)))
        except InvalidError:
            changed = None
        if changed is not None:
            updated = await _check_call(api.Update(api_pb2.UpdateRequest(object=wrap(changed))))
            if updated is not None:
                validate(unwrap(updated))
        m = stored_obj.metadata
        got = await api.Get(api_pb2.GetRequest(kind=kind, namespace=m.namespace, name=m.name))
        validate(unwrap(got))
        await _check_call(
            api.Delete(api_pb2.DeleteRequest(kind=kind, namespace=m.namespace, name=m.name, grace_period_seconds=0))
        )
