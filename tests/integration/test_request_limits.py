"""Hardening on every call: a server-side deadline and a bound on message size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from controlplane import transport
from controlplane.api.objects import from_manifest, wrap
from controlplane.api.pb import api_pb2, api_pb2_grpc
from controlplane.apiserver.guard import Limits
from controlplane.apiserver.main import ApiServer, SecurityConfig
from controlplane.launcher.etcd import EtcdCluster
from tests.conftest import api_config


@pytest.fixture
async def impatient(etcd_cluster: EtcdCluster) -> AsyncIterator[api_pb2_grpc.ApiStub]:
    server = ApiServer(api_config(etcd_cluster.endpoints, security=SecurityConfig(limits=Limits(request_timeout=0.5))))
    await server.start()
    channel = transport.make_channel([f"127.0.0.1:{server.port}"])
    try:
        yield api_pb2_grpc.ApiStub(channel)
    finally:
        await channel.close()
        await server.stop()


async def test_a_call_is_cut_at_the_server_deadline_whatever_the_client_asked(impatient: api_pb2_grpc.ApiStub) -> None:
    # A List for a revision far in the future waits for the cache up to 3 s; the server allows 0.5 s.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await impatient.List(api_pb2.ListRequest(kind="pods", resource_version="999999999"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "/navarch.v1.Api/List did not finish within 0.5s" in (caught.value.details() or "")


async def test_an_oversized_message_is_refused_unread(impatient: api_pb2_grpc.ApiStub) -> None:
    huge = from_manifest(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge"}, "data": {"blob": "x" * (5 << 20)}}
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await impatient.Create(api_pb2.CreateRequest(object=wrap(huge)), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"label_selector": "app=" + "x" * 40_000}, "labelSelector: 40004 characters is longer than the limit"),
        ({"field_selector": "metadata.name=" + "x" * 40_000}, "fieldSelector: 40014 characters is longer"),
        ({"continue": "e" * 5000, "limit": 10}, "continue: the token is 5000 characters, longer than any"),
    ],
    ids=["label-selector", "field-selector", "continue-token"],
)
async def test_user_strings_over_their_limit_are_refused_naming_it(
    api: api_pb2_grpc.ApiStub, request_fields: dict[str, Any], message: str
) -> None:
    for method in (api.List, api.Watch):
        if method is api.Watch and "continue" in request_fields:
            continue
        req_type = api_pb2.ListRequest if method is api.List else api_pb2.WatchRequest
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            call = method(req_type(kind="configmaps", namespace="default", **request_fields), timeout=10)
            if method is api.Watch:
                await call.read()
            else:
                await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (caught.value.details() or "")


async def test_the_reported_cubic_field_selector_is_answered_and_the_server_keeps_serving(
    api: api_pb2_grpc.ApiStub,
) -> None:
    # 2,000 spaces and a newline took the old parser 11 s on the event loop; at the size limit it never ended.
    hostile = "metadata.name=" + " " * 32_000 + "x\ny"
    resp = await api.List(api_pb2.ListRequest(kind="configmaps", field_selector=hostile), timeout=30)
    assert list(resp.items) == []
    await api.List(api_pb2.ListRequest(kind="namespaces"), timeout=5)
