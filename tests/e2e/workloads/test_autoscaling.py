"""A HorizontalPodAutoscaler made with ``navarch autoscale`` scales a CPU-bound Deployment up under load and
back down once the load is gone and the (shortened) stabilization window has passed. Real agents sample real
processes; the controller manager here runs with ``--horizontal-pod-autoscaler-sync-period 2s`` and
``--horizontal-pod-autoscaler-downscale-stabilization 15s`` (tests/e2e/workloads/conftest.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from controlplane.api.objects import from_manifest
from controlplane.api.pb import apps_pb2, autoscaling_pb2, core_pb2
from controlplane.client.client import ApiClient
from tests.cli.conftest import Cli
from tests.e2e.conftest import eventually_async
from tests.e2e.workloads.conftest import StartAgents

# Burns CPU while the load file exists, idles otherwise.
LOADED = (
    "import os, sys, time\n"
    "flag = sys.argv[1]\n"
    "while True:\n"
    "    if os.path.exists(flag):\n"
    "        end = time.time() + 0.1\n"
    "        while time.time() < end: pass\n"
    "    else:\n"
    "        time.sleep(0.2)\n"
)


def burner(name: str, namespace: str, flag: Path) -> apps_pb2.Deployment:
    d = from_manifest(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "main",
                                "command": ["python3", "-c", LOADED, str(flag)],
                                "resources": {"requests": {"cpu": "200m"}},
                            }
                        ],
                    },
                },
            },
        }
    )
    assert isinstance(d, apps_pb2.Deployment)
    return d


async def test_an_hpa_scales_up_under_load_and_down_after_the_window(
    agents: StartAgents, client: ApiClient, cli: Cli, namespace: str, tmp_path: Path
) -> None:
    await agents(1, "--usage-interval", "2")
    flag = tmp_path / "load"
    flag.touch()
    await client.create(burner("burner", namespace, flag))
    made = await cli(
        "autoscale", "deployment", "burner", "-n", namespace, "--min", "1", "--max", "3", "--cpu-percent", "50"
    )
    assert made.code == 0 and "horizontalpodautoscaler.autoscaling/burner autoscaled" in made.out, made.err

    async def replicas(n: int) -> bool:
        d = await client.get(apps_pb2.Deployment, "burner", namespace)
        return d.spec.replicas == n

    # One pod burning a core against a 200m request is ~500 % of 50 %: up to the maximum.
    await eventually_async(lambda: replicas(3), timeout=90)
    hpa = await client.get(autoscaling_pb2.HorizontalPodAutoscaler, "burner", namespace)
    [metric] = hpa.status.current_metrics
    assert metric.resource.name == "cpu" and metric.resource.current.average_utilization > 50, hpa.status
    limited = {c.type: c for c in hpa.status.conditions}
    assert limited["ScalingActive"].status == "True", hpa.status
    table = await cli("get", "hpa", "-n", namespace)
    assert "Deployment/burner" in table.out and "/50%" in table.out and "cpu: " in table.out, table.out
    events = await client.list(
        core_pb2.Event, namespace, field_selector="involvedObject.name=burner,reason=SuccessfulRescale"
    )
    assert any("New size: " in e.message for e in events.items), [e.message for e in events.items]

    # Load off: the pods idle, but the highest recommendation of the last 15 s still holds the size.
    flag.unlink()
    off = time.monotonic()
    await asyncio.sleep(6)
    assert await replicas(3), "scaled down before the stabilization window passed"
    await eventually_async(lambda: replicas(1), timeout=90)
    assert time.monotonic() - off >= 15
