"""Ports the node allocates (``containerPort: 0``), end to end: ten replicas of one HTTP server on three
agents, each listening where ``PORT_HTTP`` says, reachable through the Service's cluster IP; the ports stay
through an agent restart (plausible bugs: two replicas on one node handed the same port; Endpoints naming
port 0; a restarted agent handing a live pod's port to a new one, or giving a pod a new port)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from controlplane.api.objects import from_manifest
from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.client.client import ApiClient
from tests.cli.conftest import Cli
from tests.e2e.conftest import eventually_async
from tests.e2e.workloads.conftest import StartAgents
from tests.e2e.workloads.test_services import get

# Answers every GET with its pod's name; listens on the port the node allocated.
SERVER = (
    "import http.server as h,os;n=os.environ['POD_NAME'].encode();"
    "H=type('H',(h.BaseHTTPRequestHandler,),{'do_GET':lambda s:(s.send_response(200),"
    "s.send_header('Content-Length',str(len(n))),s.end_headers(),s.wfile.write(n)),"
    "'log_message':lambda *a:None});h.HTTPServer((os.environ['POD_IP'],int(os.environ['PORT_HTTP'])),H).serve_forever()"
)
REPLICAS = 10


def dynamic_web(namespace: str) -> Any:
    return from_manifest(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": REPLICAS,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "http",
                                "command": ["python3", "-c", SERVER],
                                "env": [
                                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                ],
                                "ports": [{"name": "http", "containerPort": 0}],
                                "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1},
                            }
                        ],
                    },
                },
            },
        }
    )


def allocated(pod: core_pb2.Pod) -> int:
    ports = [a.container_port for st in pod.status.container_statuses for a in st.allocated_ports if a.name == "http"]
    return int(ports[0]) if ports else 0


async def test_ten_replicas_on_three_nodes_get_their_own_ports_and_keep_them_through_an_agent_restart(
    client: ApiClient, namespace: str, agents: StartAgents, cli: Cli
) -> None:
    started = await agents(3, "--dynamic-port-range", "21000-21999")
    await client.create(dynamic_web(namespace))
    await client.create(
        from_manifest(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
            }
        )
    )

    async def all_ready() -> bool:
        pods = (await client.list(core_pb2.Pod, namespace)).items
        ready = [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)]
        return len(ready) == REPLICAS

    await eventually_async(all_ready, timeout=90)
    pods = (await client.list(core_pb2.Pod, namespace)).items
    where = {p.metadata.name: (p.spec.node_name, p.status.pod_ip, allocated(p)) for p in pods}
    assert len({n for n, _, _ in where.values()}) == 3  # spread over the three nodes (no host port to collide on)
    assert all(21000 <= port <= 21999 for _, _, port in where.values()), where
    per_node: dict[str, list[int]] = {}
    for node, _, port in where.values():
        per_node.setdefault(node, []).append(port)
    assert all(len(set(ports)) == len(ports) for ports in per_node.values()), per_node  # no port twice on a node

    # Endpoints name each replica's own port, and the cluster IP reaches every replica.
    async def endpoints_complete() -> bool:
        ep = await client.get(core_pb2.Endpoints, "web", namespace)
        got = {(a.ip, p.port) for s in ep.subsets for a in s.addresses for p in s.ports}
        return got == {(ip, port) for _, ip, port in where.values()}

    await eventually_async(endpoints_complete, timeout=30)
    ip = (await client.get(core_pb2.Service, "web", namespace)).spec.cluster_ip

    async def every_replica_answers() -> bool:
        try:
            seen = [await asyncio.to_thread(get, ip, 80) for _ in range(100)]
        except OSError:
            return False
        return set(seen) == set(where)

    await eventually_async(every_replica_answers, timeout=30)
    wide = (await cli("get", "pods", "-n", namespace, "-o", "wide", "--no-headers")).out.splitlines()
    shown = {line.split()[0]: line.split()[-1] for line in wide}
    assert shown == {name: f"http:{port}" for name, (_, _, port) in where.items()}

    # The first agent restarts: its pods are adopted with the ports they had; a new pod gets a new one.
    first = started[0]
    first.kill(signal.SIGKILL)
    first.start()
    for _ in range(20):  # the pods keep their ports for a while after the restart, not just once
        now = {p.metadata.name: allocated(p) for p in (await client.list(core_pb2.Pod, namespace)).items}
        assert {n: now.get(n) for n in where} == {n: port for n, (_, _, port) in where.items()}
        await asyncio.sleep(0.5)
    await eventually_async(every_replica_answers, timeout=30)

    # Two more replicas after the restart: new ports, none a live pod's on the same node.
    await client.patch(apps_pb2.Deployment, "web", {"spec": {"replicas": REPLICAS + 2}}, namespace)

    async def twelve_allocated() -> bool:
        pods = (await client.list(core_pb2.Pod, namespace)).items
        return len([p for p in pods if allocated(p)]) == REPLICAS + 2

    await eventually_async(twelve_allocated, timeout=60)
    per_node = {}
    for p in (await client.list(core_pb2.Pod, namespace)).items:
        per_node.setdefault(p.spec.node_name, []).append(allocated(p))
    assert all(len(set(ports)) == len(ports) for ports in per_node.values()), per_node
