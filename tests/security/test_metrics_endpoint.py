"""Who may read /metrics: the API server's own endpoint and a component's delegated one, against the secure
test cluster, over real HTTPS with real certificates."""

from __future__ import annotations

import asyncio
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane import pki
from controlplane.api.errors import InvalidError
from controlplane.api.pb import auth_pb2, rbac_pb2
from controlplane.client.metricsendpoint import (
    MAX_HEAD_BYTES,
    EndpointSecurity,
    MetricsEndpoint,
    delegated_authorizer,
)
from controlplane.clusterpki import issue_user
from tests.security.conftest import STATIC_TOKEN, SecureCluster

pytestmark = pytest.mark.integration


def _get(url: str, cluster: SecureCluster, cert: tuple[str, str] | None = None, token: str = "") -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=cluster.pki.ca)
    if cert is not None:
        ctx.load_cert_chain(*cert)
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def get(
    url: str, cluster: SecureCluster, cert: tuple[str, str] | None = None, token: str = ""
) -> tuple[int, str]:
    return await asyncio.to_thread(_get, url, cluster, cert, token)


def monitoring_cert(cluster: SecureCluster) -> tuple[str, str]:
    return issue_user(cluster.pki, "prom", (pki.MONITORING_GROUP,))


def api_url(cluster: SecureCluster, path: str = "/metrics") -> str:
    endpoint = cluster.server.metrics_endpoint
    assert endpoint is not None
    return f"https://127.0.0.1:{endpoint.port}{path}"


async def test_the_api_servers_metrics_need_a_caller_that_rbac_allows(secure: SecureCluster) -> None:
    url = api_url(secure)
    status, body = await get(url, secure)
    assert status == 401, body
    status, body = await get(url, secure, issue_user(secure.pki, "mallory", ("developers",)))
    assert status == 403 and 'user "mallory" cannot get path "/metrics"' in body
    status, body = await get(url, secure, monitoring_cert(secure))
    assert status == 200
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {"apiserver_request", "apiserver_storage_objects", "etcd_request_duration_seconds"} <= names, names
    status, _ = await get(url, secure, (secure.pki.cert("admin"), secure.pki.key("admin")))
    assert status == 200  # system:masters


async def test_a_bearer_token_is_authorized_by_its_user_s_bindings(secure: SecureCluster) -> None:
    url = api_url(secure)
    admin = secure.admin()
    binding = rbac_pb2.ClusterRoleBinding(
        api_version="rbac.authorization.k8s.io/v1",
        kind="ClusterRoleBinding",
        role_ref=rbac_pb2.RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="system:monitoring"),
        subjects=[rbac_pb2.Subject(kind="User", api_group="rbac.authorization.k8s.io", name="ops")],
    )
    binding.metadata.name = "ops-scrapes"
    status, _ = await get(url, secure, token="not-a-token")
    assert status == 401
    await admin.create(binding)
    try:
        await asyncio.sleep(0.5)  # the binding reaches the server's RBAC cache
        status, body = await get(url, secure, token=STATIC_TOKEN)
        assert status == 200, body
    finally:
        await admin.delete(rbac_pb2.ClusterRoleBinding, "ops-scrapes")
        await admin.close()


async def test_probes_answer_anyone_and_other_paths_and_methods_are_refused(secure: SecureCluster) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        status, body = await get(api_url(secure, path), secure)
        assert (status, body.strip()) == (200, "ok"), path
    status, _ = await get(api_url(secure, "/debug/pprof"), secure)
    assert status == 404
    endpoint = secure.server.metrics_endpoint
    assert endpoint is not None

    def raw(request: bytes) -> bytes:
        ctx = ssl.create_default_context(cafile=secure.pki.ca)
        with (
            socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock,
            ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(request)
            return tls.recv(200)

    assert (await asyncio.to_thread(raw, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
    huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
    assert (await asyncio.to_thread(raw, huge)).startswith(b"HTTP/1.1 431")
    assert (await asyncio.to_thread(raw, b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400")


async def test_a_certificate_from_another_ca_gets_no_answer(secure: SecureCluster, tmp_path: Path) -> None:
    other = pki.CertificateAuthority.create("intruder-ca")
    cert, key = other.issue_pair(pki.Identity("prom", (pki.MONITORING_GROUP,)))
    paths = pki.write_pair(tmp_path, "intruder", cert, key)
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        await get(api_url(secure), secure, (str(paths[0]), str(paths[1])))


async def test_a_components_endpoint_asks_the_api_server_who_may_scrape(secure: SecureCluster) -> None:
    scheduler = secure.client_as(secure.pki.cert("scheduler"), secure.pki.key("scheduler"))
    reviews = 0
    review = delegated_authorizer(scheduler.call_auth)

    async def counted(caller, path):  # type: ignore[no-untyped-def]
        nonlocal reviews
        reviews += 1
        return await review(caller, path)

    endpoint = MetricsEndpoint(
        "127.0.0.1:0",
        security=EndpointSecurity(secure.pki.cert("scheduler"), secure.pki.key("scheduler"), secure.pki.ca, counted),
    )
    await endpoint.start()
    try:
        url = f"https://127.0.0.1:{endpoint.port}/metrics"
        prom = monitoring_cert(secure)
        assert (await get(url, secure))[0] == 401
        assert (await get(url, secure, issue_user(secure.pki, "eve", ())))[0] == 403
        for _ in range(3):
            status, body = await get(url, secure, prom)
            assert status == 200 and "process_cpu_seconds_total" in body
        assert reviews == 2  # one per caller: the allowed decision is cached
    finally:
        await endpoint.stop()
        await scheduler.close()


async def test_an_access_review_of_a_path_is_checked(secure: SecureCluster) -> None:
    admin = secure.admin()
    try:
        bad = auth_pb2.AccessReviewRequest(verb="get", non_resource_url="metrics")
        with pytest.raises(InvalidError):
            await admin.call_auth(lambda stub, t: stub.AccessReview(bad, timeout=t), "review")
        both = auth_pb2.AccessReviewRequest(verb="get", non_resource_url="/metrics", resource="pods")
        with pytest.raises(InvalidError):
            await admin.call_auth(lambda stub, t: stub.AccessReview(both, timeout=t), "review")
        ok = auth_pb2.AccessReviewRequest(
            verb="get", non_resource_url="/metrics", user="x", groups=["system:monitoring"]
        )
        answer = await admin.call_auth(lambda stub, t: stub.AccessReview(ok, timeout=t), "review")
        assert answer.allowed
        # Reading every object is not reading /metrics: a rule for resources never covers a path.
        binding = rbac_pb2.ClusterRoleBinding(
            api_version="rbac.authorization.k8s.io/v1",
            kind="ClusterRoleBinding",
            role_ref=rbac_pb2.RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="view"),
            subjects=[rbac_pb2.Subject(kind="Group", api_group="rbac.authorization.k8s.io", name="viewers")],
        )
        binding.metadata.name = "viewers"
        await admin.create(binding)
        await asyncio.sleep(0.5)
        no = auth_pb2.AccessReviewRequest(verb="get", non_resource_url="/metrics", user="x", groups=["viewers"])
        answer = await admin.call_auth(lambda stub, t: stub.AccessReview(no, timeout=t), "review")
        assert not answer.allowed
        pods = auth_pb2.AccessReviewRequest(
            verb="list", resource="pods", namespace="default", user="x", groups=["viewers"]
        )
        assert (await admin.call_auth(lambda stub, t: stub.AccessReview(pods, timeout=t), "review")).allowed
        await admin.delete(rbac_pb2.ClusterRoleBinding, "viewers")
    finally:
        await admin.close()


async def test_a_role_may_not_grant_paths_and_a_rule_names_one_or_the_other(secure: SecureCluster) -> None:
    admin = secure.admin()
    try:
        role = rbac_pb2.Role(api_version="rbac.authorization.k8s.io/v1", kind="Role")
        role.metadata.name, role.metadata.namespace = "paths", "default"
        role.rules.add(verbs=["get"], non_resource_urls=["/metrics"])
        with pytest.raises(InvalidError, match="only a ClusterRole"):
            await admin.create(role)
        mixed = rbac_pb2.ClusterRole(api_version="rbac.authorization.k8s.io/v1", kind="ClusterRole")
        mixed.metadata.name = "mixed"
        mixed.rules.add(verbs=["get"], non_resource_urls=["/metrics"], resources=["pods"], api_groups=[""])
        with pytest.raises(InvalidError, match="not both"):
            await admin.create(mixed)
        wild = rbac_pb2.ClusterRole(api_version="rbac.authorization.k8s.io/v1", kind="ClusterRole")
        wild.metadata.name = "wild"
        wild.rules.add(verbs=["get"], non_resource_urls=["/me*trics"])
        with pytest.raises(InvalidError, match="prefix ending in"):
            await admin.create(wild)
    finally:
        await admin.close()


def test_plain_http_is_refused_off_loopback() -> None:
    with pytest.raises(ValueError, match="only on loopback"):
        MetricsEndpoint("0.0.0.0:0", security=None)
