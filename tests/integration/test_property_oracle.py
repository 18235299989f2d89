"""Property, with an oracle that is not the server's validator: well-typed but possibly invalid objects, and
raw merge patches, reach the API server; each is accepted exactly when a small hand-written model of the
documented rules (below, written without the server's regular expressions) says it is valid; a refusal is
INVALID_ARGUMENT and stores nothing (a refused Create leaves no object, a refused Patch leaves the object at
its resourceVersion).

Every example reaches the server (the generators only build what the schema can carry), and the test says
so. It runs twice: on Hypothesis' fixed corpus (CI's derandomized profile) and on a fresh random seed,
printed in the run's summary so that a failure found by one CI run can be replayed (NAVARCH_PROPERTY_SEED=N).

Plausible bugs it catches that the older property test could not: a rule the server forgot (the old oracle
was the server's own ``validate()``), a rule that refuses valid input, a Patch path that skips validation,
a refused write that still stored something.
"""

from __future__ import annotations

import json
import os
import random
import string
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from controlplane.api.objects import from_manifest, wrap
from controlplane.api.pb import api_pb2
from tests.helpers import api_stub
from tests.integration.conftest import SUMMARY

NAMESPACE = "oracle"
SEED = int(os.environ.get("NAVARCH_PROPERTY_SEED") or random.SystemRandom().randrange(2**32))

# ---------------------------------------------------------------- the model (independent of validation.py)

LOWER_ALNUM = set(string.ascii_lowercase + string.digits)
ALNUM = set(string.ascii_letters + string.digits)


def dns_label(s: str, *, max_len: int = 63, letter_first: bool = False) -> bool:
    """RFC 1123 label: 1-63 of a-z 0-9 -, alphanumeric at both ends (RFC 1035: a letter first)."""
    if not 1 <= len(s) <= max_len or not set(s) <= LOWER_ALNUM | {"-"}:
        return False
    if s[0] == "-" or s[-1] == "-":
        return False
    return not letter_first or s[0].isalpha()


def dns_subdomain(s: str) -> bool:
    """RFC 1123 subdomain: labels joined by dots, at most 253 characters."""
    return 1 <= len(s) <= 253 and all(dns_label(part, max_len=253) for part in s.split("."))


def label_name(s: str) -> bool:
    """The name part of a label key, and a non-empty label value: 1-63 of A-Za-z0-9 - _ ., alphanumeric ends."""
    return 1 <= len(s) <= 63 and set(s) <= ALNUM | set("-_.") and s[0] in ALNUM and s[-1] in ALNUM


def label_key(k: str) -> bool:
    prefix, slash, name = k.rpartition("/")
    if slash and not dns_subdomain(prefix):
        return False
    return label_name(name)


def label_value(v: str) -> bool:
    return v == "" or label_name(v)


@dataclass(frozen=True)
class Case:
    """A generated object (or patch) and what the model expects of it."""

    kind: str
    doc: dict[str, Any]
    valid: bool
    why: str


# ---------------------------------------------------------------- generators


def _text(alphabet: str, max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, max_size=max_size)


NAME_CHARS = string.ascii_lowercase + string.digits + "-." + "A_ "
names = st.one_of(
    _text(NAME_CHARS, 12),
    st.sampled_from(["web", "a.b", "-web", "web-", "a..b", "x" * 63, "x" * 64, "Web", "1abc", ""]),
    st.integers(240, 260).map(lambda n: "a" * n),
)
label_keys = st.one_of(
    _text(string.ascii_letters + string.digits + "-_./", 10),
    st.sampled_from(["app", "app.kubernetes.io/name", "/x", "a/", "-a", "a" * 64, "example.com/" + "b" * 63]),
)
label_values = st.one_of(_text(string.ascii_letters + string.digits + "-_. ", 10), st.sampled_from(["", "v" * 64]))
ports = st.one_of(st.integers(-5, 70000), st.sampled_from([0, 1, 65535, 65536]))
replicas = st.integers(-3, 5)
restart_policies = st.sampled_from(["Always", "OnFailure", "Never", "always", "Sometimes", ""])


@st.composite
def cases(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["ConfigMap", "Pod", "Deployment", "Service", "Job"]))
    name = draw(names)
    labels = draw(st.dictionaries(label_keys, label_values, max_size=2))
    problems: list[str] = []
    service = kind == "Service"
    if not (dns_label(name, letter_first=True) if service else dns_subdomain(name)):
        problems.append("metadata.name")
    elif kind == "Job" and len(name) > 63:  # its pods carry the name as a label value
        problems.append("metadata.name (Job: at most 63)")
    if not all(label_key(k) and label_value(v) for k, v in labels.items()):
        problems.append("metadata.labels")
    meta = {"name": name, "namespace": NAMESPACE, "labels": labels}
    container: dict[str, Any] = {"name": "main", "command": ["true"]}
    doc: dict[str, Any]
    if kind == "ConfigMap":
        doc = {"apiVersion": "v1", "kind": kind, "metadata": meta, "data": {"k": "v"}}
    elif kind == "Pod":
        port, policy = draw(ports), draw(restart_policies)
        container["ports"] = [{"containerPort": port}]
        if not 1 <= port <= 65535:
            problems.append("containerPort")
        if policy not in ("Always", "OnFailure", "Never", ""):  # empty: defaulted to Always
            problems.append("restartPolicy")
        doc = {"apiVersion": "v1", "kind": kind, "metadata": meta, "spec": {"containers": [container]}}
        if policy:
            doc["spec"]["restartPolicy"] = policy
    elif kind == "Deployment":
        n = draw(replicas)
        if n < 0:
            problems.append("spec.replicas")
        template = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [container]}}
        spec = {"replicas": n, "selector": {"matchLabels": {"app": "x"}}, "template": template}
        doc = {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}
    elif kind == "Service":
        port = draw(ports)
        if not 1 <= port <= 65535:
            problems.append("spec.ports[0].port")
        doc = {"apiVersion": "v1", "kind": kind, "metadata": meta, "spec": {"ports": [{"port": port}]}}
    else:
        policy = draw(restart_policies)
        parallelism = draw(replicas)
        if policy not in ("OnFailure", "Never"):  # a Job's pods may not restart Always, and there is no default
            problems.append("spec.template.spec.restartPolicy")
        if parallelism < 0:
            problems.append("spec.parallelism")
        pod_spec: dict[str, Any] = {"containers": [container]}
        if policy:
            pod_spec["restartPolicy"] = policy
        spec = {"parallelism": parallelism, "template": {"spec": pod_spec}}
        doc = {"apiVersion": "batch/v1", "kind": kind, "metadata": meta, "spec": spec}
    return Case(kind, doc, not problems, ", ".join(problems) or "valid")


@st.composite
def label_patches(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A raw merge patch of a stored ConfigMap's labels and data, and whether the model accepts it."""
    labels = draw(st.dictionaries(label_keys, label_values, min_size=1, max_size=2))
    ok = all(label_key(k) and label_value(v) for k, v in labels.items())
    return {"metadata": {"labels": labels}, "data": {"patched": "yes"}}, ok


# ---------------------------------------------------------------- the property

REACHED: dict[str, int] = {"examples": 0, "reached": 0}


@pytest.fixture(scope="module")
async def oracle_namespace(channel: grpc.aio.Channel) -> str:
    api = api_stub(channel)
    ns = from_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    try:
        await api.Create(api_pb2.CreateRequest(object=wrap(ns)))
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    return NAMESPACE


async def _exists(api: Any, kind: str, name: str) -> bool:
    try:
        await api.Get(api_pb2.GetRequest(kind=kind, namespace=NAMESPACE, name=name))
    except grpc.aio.AioRpcError as err:
        assert err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), err.details()
        return False
    return True


async def _check_create(api: Any, case: Case) -> None:
    REACHED["examples"] += 1
    obj = from_manifest(json.loads(json.dumps(case.doc)))  # well-typed by construction: never refused here
    name = case.doc["metadata"]["name"]
    existed = bool(name) and await _exists(api, case.kind, name)
    try:
        await api.Create(api_pb2.CreateRequest(object=wrap(obj)))
        accepted, details = True, ""
    except grpc.aio.AioRpcError as err:
        accepted, details = False, f"{err.code().name}: {err.details()}"
        if err.code() == grpc.StatusCode.ALREADY_EXISTS:
            assert existed, details
            return  # an earlier example made it; nothing to learn
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, details
    REACHED["reached"] += 1
    assert accepted == case.valid, f"seed {SEED}: model says {case.why}, server {'accepted' if accepted else details}"
    if not accepted and not existed and name:
        assert not await _exists(api, case.kind, name), "a refused Create stored something"
    if accepted:
        await api.Delete(api_pb2.DeleteRequest(kind=case.kind, namespace=NAMESPACE, name=name, grace_period_seconds=0))


async def _check_patch(api: Any, patch: dict[str, Any], ok: bool) -> None:
    base = from_manifest(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "patched", "namespace": NAMESPACE}}
    )
    try:
        await api.Create(api_pb2.CreateRequest(object=wrap(base)))
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    before = await api.Get(api_pb2.GetRequest(kind="ConfigMap", namespace=NAMESPACE, name="patched"))
    request = api_pb2.PatchRequest(kind="ConfigMap", namespace=NAMESPACE, name="patched", merge_patch=json.dumps(patch))
    try:
        await api.Patch(request)
        accepted, details = True, ""
    except grpc.aio.AioRpcError as err:
        accepted, details = False, f"{err.code().name}: {err.details()}"
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, details
    assert accepted == ok, f"seed {SEED}: model says {'valid' if ok else 'invalid'}, server {details or 'accepted'}"
    after = await api.Get(api_pb2.GetRequest(kind="ConfigMap", namespace=NAMESPACE, name="patched"))
    if not accepted:
        assert after.config_map.metadata.resource_version == before.config_map.metadata.resource_version
    await api.Delete(api_pb2.DeleteRequest(kind="ConfigMap", namespace=NAMESPACE, name="patched"))


_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(case=cases())
async def test_the_server_agrees_with_the_model_on_the_fixed_corpus(
    channel: grpc.aio.Channel, oracle_namespace: str, case: Case
) -> None:
    await _check_create(api_stub(channel), case)


@seed(SEED)
@settings(_SETTINGS, derandomize=False)
@given(case=cases())
async def test_the_server_agrees_with_the_model_on_a_fresh_seed(
    channel: grpc.aio.Channel, oracle_namespace: str, case: Case
) -> None:
    await _check_create(api_stub(channel), case)


@_SETTINGS
@given(patch=label_patches())
async def test_raw_merge_patches_agree_with_the_model(
    channel: grpc.aio.Channel, oracle_namespace: str, patch: tuple[dict[str, Any], bool]
) -> None:
    await _check_patch(api_stub(channel), *patch)


def test_every_example_reached_the_server() -> None:
    """Runs after the property tests (file order): none of their examples stopped before the server."""
    SUMMARY.append(
        f"property oracle: seed {SEED} (replay: NAVARCH_PROPERTY_SEED={SEED}); "
        f"{REACHED['reached']} of {REACHED['examples']} Create examples reached the server"
    )
    assert REACHED["examples"] >= 100
    assert REACHED["reached"] / REACHED["examples"] >= 0.9
