"""The API server reaches etcd over mutual TLS with --etcd-cafile/--etcd-certfile/--etcd-keyfile."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.api.errors import UnavailableError
from controlplane.apiserver.main import ApiServer
from controlplane.launcher.etcd import EtcdCluster, EtcdTLS
from controlplane.storage import EtcdConfig
from tests.certs import Pki, make_pki
from tests.conftest import api_config
from tests.helpers import api_stub, configmap, name_of

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_etcd(pki: Pki) -> Iterator[EtcdCluster]:
    tls = EtcdTLS(
        pki.ca, pki.server_cert, pki.server_key, client_cert_file=pki.client_cert, client_key_file=pki.client_key
    )
    with EtcdCluster(1, tls=tls) as cluster:
        yield cluster


async def test_apiserver_serves_from_an_etcd_that_requires_client_certificates(tls_etcd: EtcdCluster, pki: Pki) -> None:
    from controlplane import transport
    from controlplane.api.pb import api_pb2

    config = api_config(tls_etcd.endpoints)
    config = type(config)(
        **{
            **config.__dict__,
            "etcd": EtcdConfig(
                endpoints=tls_etcd.endpoints, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key
            ),
        }
    )
    server = ApiServer(config)
    await server.start()
    try:
        channel = transport.make_channel([f"127.0.0.1:{server.port}"])
        api = api_stub(channel)
        created = await api.Create(api_pb2.CreateRequest(object=configmap("over-tls", "default")))
        got = await api.Get(api_pb2.GetRequest(kind="cm", namespace="default", name="over-tls"))
        assert name_of(got) == name_of(created) == "over-tls"
        await channel.close()
    finally:
        await server.stop()


async def test_without_a_client_certificate_etcd_refuses_and_start_fails(tls_etcd: EtcdCluster, pki: Pki) -> None:
    etcd = EtcdConfig(endpoints=tls_etcd.endpoints, ca_file=pki.ca)
    server = ApiServer(api_config(tls_etcd.endpoints, etcd=etcd, startup_timeout=2.0))
    with pytest.raises(UnavailableError, match="cannot reach etcd"):
        await server.start()


def test_apiserver_flags_for_etcd_tls(tls_etcd: EtcdCluster, pki: Pki) -> None:
    result = subprocess.run(
        [
            str(BIN / "navarch-apiserver"),
            "--etcd-servers",
            tls_etcd.endpoints[0],
            "--listen",
            "127.0.0.1:0",
            "--insecure",
            "--etcd-certfile",
            pki.client_cert,
            "--etcd-keyfile",
            pki.client_key,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "--etcd-cafile" in result.stderr
