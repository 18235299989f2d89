"""The agent's metrics, under the kubelet's names where it has one.

``kubelet_running_pods`` and ``kubelet_running_containers`` are counted at scrape time;
``kubelet_pod_start_duration_seconds`` runs from the agent first seeing a pod to its phase becoming Running
(artifacts, volumes and init containers included). From the latest usage sample, per container:
``container_cpu_usage_cores`` (Navarch: the rate over the sample window) and
``container_memory_working_set_bytes``; ``navarch_agent_usage_sample_cpu_seconds`` is what the last sample
cost the agent.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nodeagent.usage import NodeUsage

POD_START_DURATION = Histogram(
    "kubelet_pod_start_duration_seconds",
    "Seconds from the agent first seeing a pod to the pod running.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 300, 600),
)


@dataclass(frozen=True)
class AgentFigures:
    """What one agent reports at scrape time."""

    running_pods: Callable[[], int]
    running_containers: Callable[[], int]
    usage: Callable[[], NodeUsage | None]
    sample_cost: Callable[[], float]


class _AgentCollector(Collector):
    def __init__(self) -> None:
        self._agents: weakref.WeakKeyDictionary[object, AgentFigures] = weakref.WeakKeyDictionary()

    def track(self, agent: object, figures: AgentFigures) -> None:
        """Report ``figures`` while ``agent`` lives (tests run several agents in one process)."""
        self._agents[agent] = figures

    def collect(self) -> Iterator[Metric]:
        pods = GaugeMetricFamily("kubelet_running_pods", "Pods with a running container.")
        containers = GaugeMetricFamily("kubelet_running_containers", "Containers by state.", labels=["container_state"])
        cost = GaugeMetricFamily(
            "navarch_agent_usage_sample_cpu_seconds", "CPU seconds the agent spent on its last usage sample."
        )
        cpu = GaugeMetricFamily(
            "container_cpu_usage_cores",
            "Cores a container used over the last sample window.",
            labels=["namespace", "pod", "container"],
        )
        memory = GaugeMetricFamily(
            "container_memory_working_set_bytes",
            "A container's working set in the last sample.",
            labels=["namespace", "pod", "container"],
        )
        n_pods = n_containers = 0
        spent = 0.0
        for figures in list(self._agents.values()):
            n_pods += figures.running_pods()
            n_containers += figures.running_containers()
            spent += figures.sample_cost()
            usage = figures.usage()
            for pod in usage.pods if usage is not None else ():
                for c in pod.containers:
                    labels = [pod.namespace, pod.name, c.name]
                    if c.cpu_cores is not None:
                        cpu.add_metric(labels, c.cpu_cores)
                    memory.add_metric(labels, c.memory_working_set_bytes)
        pods.add_metric([], n_pods)
        containers.add_metric(["running"], n_containers)
        cost.add_metric([], spent)
        yield from (pods, containers, cost, cpu, memory)


AGENTS = _AgentCollector()
REGISTRY.register(AGENTS)
