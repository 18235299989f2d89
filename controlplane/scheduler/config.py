"""The scheduler's configuration: flags, and an optional YAML file that enables and weights plugins.

```yaml
schedulerName: default-scheduler
percentageOfNodesToScore: 0        # 0: adaptive, as Kubernetes (50 % minus 1 % per 125 nodes, at least 5 %)
plugins:
  filters:
    disabled: [NodePorts]          # every other built-in filter stays on
  scores:                          # weight per score plugin; 0 disables it; unlisted keep their default
    LeastAllocated: 2
    BalancedAllocation: 0
```
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from controlplane.scheduler.plugins import DEFAULT_WEIGHTS, FILTERS, SCORES


class ConfigError(ValueError):
    """The configuration file is unreadable or names something that does not exist."""


@dataclass(frozen=True)
class SchedulerConfig:
    """Everything the scheduler runs with."""

    scheduler_name: str = "default-scheduler"
    """Pods naming another ``schedulerName`` are left alone."""
    filters: tuple[str, ...] = tuple(FILTERS)
    """Enabled filter plugins, in the order they run."""
    weights: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    """Enabled score plugins and their weights."""
    percentage_of_nodes_to_score: int = 0
    """Stop filtering after this share of nodes proved feasible (0: adaptive; at least 100 nodes)."""
    backoff_initial: float = 1.0
    """First per-pod back-off after a failed attempt (seconds), doubling..."""
    backoff_max: float = 10.0
    """...up to this."""
    unschedulable_retry: float = 60.0
    """Unschedulable pods are retried at least this often even without a relevant cluster event."""
    bind_batch_size: int = 100
    """Most bindings in one ``BindPods`` request (the API server's limit is 100)."""
    bind_concurrency: int = 4
    """Binding requests in flight at once."""
    event_qps: float = 50.0
    """Normal Events (``Scheduled``) per second at most; more are dropped and counted (0: unlimited)."""
    event_burst: int = 100
    bind_timeout: float = 5.0
    """Deadline of one binding call (kept below the leader lease's grace, so a deposed leader's binds end)."""


def load_config(path: str | None, **overrides: Any) -> SchedulerConfig:
    """Defaults, then the file (if any), then explicit overrides (flags)."""
    config = SchedulerConfig()
    if path:
        try:
            doc = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: {err}") from None
        config = _apply(config, doc, path)
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def _apply(config: SchedulerConfig, doc: Any, path: str) -> SchedulerConfig:
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    known = {"schedulerName", "percentageOfNodesToScore", "plugins"}
    for key in doc:
        if key not in known:
            raise ConfigError(f"{path}: {key}: unknown field (known: {', '.join(sorted(known))})")
    name = doc.get("schedulerName", config.scheduler_name)
    pct = doc.get("percentageOfNodesToScore", config.percentage_of_nodes_to_score)
    if not isinstance(pct, int) or not 0 <= pct <= 100:
        raise ConfigError(f"{path}: percentageOfNodesToScore: must be an integer from 0 to 100")
    plugins = doc.get("plugins") or {}
    disabled = (plugins.get("filters") or {}).get("disabled") or []
    for plugin in disabled:
        if plugin not in FILTERS:
            known_filters = ", ".join(FILTERS)
            raise ConfigError(f"{path}: plugins.filters.disabled: unknown filter {plugin!r} (known: {known_filters})")
    weights = dict(config.weights)
    for plugin, weight in (plugins.get("scores") or {}).items():
        if plugin not in SCORES:
            raise ConfigError(f"{path}: plugins.scores.{plugin}: unknown score plugin (known: {', '.join(SCORES)})")
        if not isinstance(weight, int) or weight < 0:
            raise ConfigError(f"{path}: plugins.scores.{plugin}: weight must be a non-negative integer")
        weights[plugin] = weight
    return replace(
        config,
        scheduler_name=str(name),
        percentage_of_nodes_to_score=pct,
        filters=tuple(f for f in config.filters if f not in disabled),
        weights={k: v for k, v in weights.items() if v > 0},
    )
