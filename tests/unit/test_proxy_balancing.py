"""How the node proxy picks a backend, and which listeners it wants, from Services and Endpoints."""

from __future__ import annotations

import time

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from nodeagent.proxy import LEAST_CONNECTIONS, ROUND_ROBIN, Listener, Rule, wanted_rules

A, B, C = ("10.0.0.1", 80), ("10.0.0.2", 80), ("10.0.0.3", 80)


def test_round_robin_starts_with_a_different_backend_each_time() -> None:
    listener = Listener(("127.77.0.1", 80), Rule("s", [A, B, C]), ROUND_ROBIN)
    firsts = [listener._order("client")[0] for _ in range(6)]
    assert firsts == [A, B, C, A, B, C]


def test_least_connections_prefers_the_idlest_backend() -> None:
    listener = Listener(("127.77.0.1", 80), Rule("s", [A, B, C]), LEAST_CONNECTIONS)
    listener.active = {A: 5, B: 0, C: 2}
    assert [listener._order("client")[0] for _ in range(3)] == [B, B, B]
    assert listener._order("client")[-1] == A


def test_client_ip_affinity_keeps_a_client_on_its_backend_while_it_is_ready() -> None:
    listener = Listener(("127.77.0.1", 80), Rule("s", [A, B, C], affinity_seconds=60), ROUND_ROBIN)
    listener._affinity["1.2.3.4"] = (B, time.monotonic())
    assert [listener._order("1.2.3.4")[0] for _ in range(4)] == [B, B, B, B]
    listener.rule = Rule("s", [A, C], affinity_seconds=60)  # B became unready: no longer chosen
    assert listener._order("1.2.3.4")[0] in (A, C)


def test_no_backends_means_nothing_to_try() -> None:
    assert Listener(("127.77.0.1", 80), Rule("s", []), ROUND_ROBIN)._order("c") == []


def _service(**spec: object) -> core_pb2.Service:
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "ns"}, "spec": spec}
    return from_manifest(doc)  # type: ignore[return-value]


def test_wanted_rules_use_ready_addresses_by_port_name_and_add_node_ports() -> None:
    svc = _service(
        type="NodePort",
        clusterIP="127.77.0.9",
        ports=[{"name": "http", "port": 80, "nodePort": 30080}, {"name": "admin", "port": 81, "nodePort": 30081}],
    )
    ep = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "ns"},
            "subsets": [
                {
                    "addresses": [{"ip": "127.0.0.2"}, {"ip": "127.0.0.3"}],
                    "notReadyAddresses": [{"ip": "127.0.0.4"}],
                    "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9000}],
                }
            ],
        }
    )
    rules = wanted_rules([svc], {"ns/web": ep}.get, "127.0.0.2")  # type: ignore[arg-type]
    assert rules[("127.77.0.9", 80)].backends == [("127.0.0.2", 8080), ("127.0.0.3", 8080)]
    assert rules[("127.77.0.9", 81)].backends == [("127.0.0.2", 9000), ("127.0.0.3", 9000)]
    assert rules[("127.0.0.2", 30080)] is rules[("127.77.0.9", 80)]
    headless = _service(clusterIP="None", ports=[{"port": 80}])
    assert wanted_rules([headless], lambda key: None, "127.0.0.2") == {}
