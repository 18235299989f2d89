"""controlplane.addresses: host:port and etcd URL parsing."""

from __future__ import annotations

import pytest

from controlplane.addresses import AddressError, EtcdEndpoints, etcd_servers, host_port, server_list


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10.0.0.1:6443", "10.0.0.1:6443"), ("[::1]:80", "[::1]:80"), ("api.example.com:6443", "api.example.com:6443")],
)
def test_host_port_accepts(value: str, expected: str) -> None:
    assert host_port(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("garbage", "no port"),
        ("1.2.3:4", "not an IPv4 address"),
        ("::1:80", "needs brackets"),
        ("a:0", "out of range"),
        ("a:65536", "out of range"),
        ("a:1x", "not a number"),
        ("a b:1", "expected host:port"),
        ("http://a:1", "expected host:port"),
        ("under_score:1", "not a host name"),
        ("x" * 300 + ":1", "not a host name"),
    ],
)
def test_host_port_refuses(value: str, reason: str) -> None:
    with pytest.raises(AddressError, match=reason):
        host_port(value)


def test_listen_addresses_may_leave_out_the_host_and_take_port_zero() -> None:
    assert host_port(":6444", listen=True) == ":6444"
    assert host_port("127.0.0.1:0", listen=True) == "127.0.0.1:0"


def test_server_lists_skip_empty_items_but_need_one() -> None:
    assert server_list("a:1, b:2,") == ["a:1", "b:2"]
    with pytest.raises(AddressError):
        server_list(" , ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:2379,http://10.0.0.2:2379", EtcdEndpoints(["127.0.0.1:2379", "10.0.0.2:2379"], False)),
        ("https://etcd-1.example/", EtcdEndpoints(["etcd-1.example:2379"], True)),
        ("HTTPS://10.0.0.1:2379", EtcdEndpoints(["10.0.0.1:2379"], True)),
        ("10.0.0.1:2379", EtcdEndpoints(["10.0.0.1:2379"], None)),
    ],
)
def test_etcd_servers(value: str, expected: EtcdEndpoints) -> None:
    assert etcd_servers(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("http://127.0.0.1:2379,https://10.0.0.2:2379", "mixes"),
        ("unix:///run/etcd.sock", "scheme must be http or https"),
        ("http://[::1]:2379", "IPv4"),
        ("http://a:2379/path", "expected host:port"),
        ("", "no etcd member"),
    ],
)
def test_etcd_servers_refuses(value: str, reason: str) -> None:
    with pytest.raises(AddressError, match=reason):
        etcd_servers(value)
