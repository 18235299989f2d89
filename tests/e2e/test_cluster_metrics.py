"""Every component of a ``navarch up`` cluster serves /metrics to the scraper identity it configured, and the
figures move during a rollout: scraped as Prometheus would (its scrape configuration, its text parser)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from controlplane.launcher.etcd import free_port
from tests.helpers import eventually_async

pytestmark = pytest.mark.e2e

NAVARCH = str(Path(sys.executable).parent / "navarch")
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "navarch-dashboard.json"
PROMQL_WORDS = {
    "sum", "by", "rate", "histogram_quantile", "topk", "le", "verb", "code", "operation", "resource", "result",
    "queue", "name", "without", "avg", "max", "min", "count", "irate", "increase",
}  # fmt: skip


@dataclass
class Cluster:
    env: dict[str, str]
    data_dir: Path
    jobs: dict[str, list[str]]
    """Scrape job → targets, from the prometheus.yml navarch up wrote."""
    tls: dict[str, str]

    def navarch(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [NAVARCH, *args], capture_output=True, text=True, timeout=timeout, env=self.env, check=False
        )

    def fetch(self, target: str, path: str = "/metrics", cert: tuple[str, str] | None = None) -> tuple[int, str]:
        ctx = ssl.create_default_context(cafile=self.tls["ca_file"])
        if cert is not None:
            ctx.load_cert_chain(*cert)
        try:
            with urllib.request.urlopen(f"https://{target}{path}", timeout=5, context=ctx) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, ""

    def scrape(self, job: str) -> dict[str, float]:
        """Every sample of a job's targets, summed over targets: ``name{label="v",...}`` → value."""
        out: dict[str, float] = {}
        for target in self.jobs[job]:
            status, text = self.fetch(target, cert=(self.tls["cert_file"], self.tls["key_file"]))
            assert status == 200, (job, target, status)
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    key = s.name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items())) + "}"
                    out[key] = out.get(key, 0.0) + s.value
        return out


def total(samples: dict[str, float], metric: str, **labels: str) -> float:
    """The sum of ``metric``'s samples whose labels include ``labels``."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items() if k.startswith(metric + "{") and all(w in k for w in wanted))


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    base = tmp_path_factory.mktemp("metrics")
    data_dir = base / "cluster"
    env = {**os.environ, "NAVARCH_CONFIG": str(base / "config")}
    env.pop("NAVARCH_SERVER", None)
    up = await asyncio.to_thread(
        subprocess.run,
        [NAVARCH, "up", "--agents", "2", "--port", str(free_port()), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        scrape = yaml.safe_load((data_dir / "prometheus.yml").read_text())
        jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in scrape["scrape_configs"]}
        yield Cluster(env, data_dir, jobs, scrape["scrape_configs"][0]["tls_config"])
    finally:
        await asyncio.to_thread(
            subprocess.run,
            [NAVARCH, "down", "--purge", "--data-dir", str(data_dir)],
            capture_output=True,
            timeout=120,
            env=env,
            check=False,
        )


def deployment(name: str, replicas: int) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "main", "command": ["sleep", "3600"]}]},
                },
            },
        }
    )


async def test_every_component_is_scraped_and_its_figures_move_during_a_rollout(cluster: Cluster) -> None:
    assert set(cluster.jobs) == {
        "navarch-apiserver",
        "navarch-scheduler",
        "navarch-controller-manager",
        "navarch-agent",
    }
    assert len(cluster.jobs["navarch-agent"]) == 2
    before = {job: await asyncio.to_thread(cluster.scrape, job) for job in cluster.jobs}
    manifest = cluster.data_dir.parent / "roll.json"
    manifest.write_text(deployment("roll", 4))
    applied = await asyncio.to_thread(cluster.navarch, "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    done = await asyncio.to_thread(cluster.navarch, "rollout", "status", "deployment", "roll", "--timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr

    async def moved() -> bool:
        after = {job: await asyncio.to_thread(cluster.scrape, job) for job in cluster.jobs}
        api, sched = after["navarch-apiserver"], after["navarch-scheduler"]
        cm, agents = after["navarch-controller-manager"], after["navarch-agent"]
        return (
            total(api, "apiserver_request_total", resource="deployments", verb="CREATE")
            > total(before["navarch-apiserver"], "apiserver_request_total", resource="deployments", verb="CREATE")
            and total(sched, "scheduler_schedule_attempts_total", result="scheduled")
            >= total(before["navarch-scheduler"], "scheduler_schedule_attempts_total", result="scheduled") + 4
            and total(cm, "workqueue_adds_total", name="deployment")
            > total(before["navarch-controller-manager"], "workqueue_adds_total", name="deployment")
            and total(cm, "workqueue_adds_total", name="replicaset")
            > total(before["navarch-controller-manager"], "workqueue_adds_total", name="replicaset")
            and total(agents, "kubelet_running_pods") >= 4
            and total(agents, "kubelet_pod_start_duration_seconds_count") >= 4
            and total(api, "apiserver_storage_objects", resource="deployments") >= 1
        )

    await eventually_async(moved, timeout=30)
    cm = await asyncio.to_thread(cluster.scrape, "navarch-controller-manager")
    depths = {k for k in cm if k.startswith("workqueue_depth{")}
    assert {'workqueue_depth{name="deployment"}', 'workqueue_depth{name="replicaset"}'} <= depths, depths
    # The figures every dashboard panel draws exist under those names (a container's CPU once the agent
    # has sampled it twice: within two sample intervals).
    dashboard = json.loads(DASHBOARD.read_text())
    wanted: dict[str, str] = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for word in re.findall(r"[a-z_][a-z0-9_]*", re.sub(r'"[^"]*"|\[[^\]]*\]', "", target["expr"])):
                if word not in PROMQL_WORDS:
                    wanted[word] = panel["title"]
    missing: list[str] = []

    async def dashboard_complete() -> bool:
        names: set[str] = set()
        for job in cluster.jobs:
            names |= {k.split("{", 1)[0] for k in await asyncio.to_thread(cluster.scrape, job)}
        missing[:] = [f"{w} (panel {t!r})" for w, t in wanted.items() if w not in names]
        return not missing

    try:
        await eventually_async(dashboard_complete, timeout=40)
    except TimeoutError:
        raise AssertionError(f"the dashboard names metrics nothing exposes: {missing}") from None


async def test_metrics_refuse_unauthenticated_and_unauthorized_scrapes(cluster: Cluster) -> None:
    pki = cluster.data_dir / "pki"
    node_cert = (str(pki / "nodes" / "node-1.pem"), str(pki / "nodes" / "node-1-key.pem"))
    admin = (str(pki / "admin.pem"), str(pki / "admin-key.pem"))
    for job, targets in cluster.jobs.items():
        for target in targets:
            assert (await asyncio.to_thread(cluster.fetch, target))[0] == 401, (job, target)
            assert (await asyncio.to_thread(cluster.fetch, target, "/metrics", node_cert))[0] == 403, (job, target)
            assert (await asyncio.to_thread(cluster.fetch, target, "/metrics", admin))[0] == 200, (job, target)
            assert (await asyncio.to_thread(cluster.fetch, target, "/readyz"))[0] == 200, (job, target)


async def test_cluster_info_and_get_raw_show_the_metrics(cluster: Cluster) -> None:
    info = await asyncio.to_thread(cluster.navarch, "cluster-info")
    assert info.returncode == 0, info.stderr
    for target in [t for targets in cluster.jobs.values() for t in targets]:
        assert f"https://{target}/metrics (ready)" in info.stdout, info.stdout
    raw = await asyncio.to_thread(cluster.navarch, "get", "--raw", "/metrics")
    assert raw.returncode == 0, raw.stderr
    families = {f.name for f in text_string_to_metric_families(raw.stdout)}
    assert {"apiserver_request", "apiserver_request_duration_seconds", "process_cpu_seconds"} <= families
