"""The scheduler's configuration file: plugins enabled and weighted by name; mistakes named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.scheduler.algorithm import Algorithm
from controlplane.scheduler.config import ConfigError, load_config
from controlplane.scheduler.plugins import FILTERS


def test_defaults_enable_every_plugin() -> None:
    config = load_config(None)
    assert config.filters == tuple(FILTERS)
    assert config.weights["TaintPreferNoSchedule"] == 3
    assert config.scheduler_name == "default-scheduler"


def test_a_file_disables_filters_and_sets_weights(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "schedulerName: batch\npercentageOfNodesToScore: 30\n"
        "plugins:\n  filters:\n    disabled: [NodePorts]\n  scores:\n    LeastAllocated: 5\n    BalancedAllocation: 0\n"
    )
    config = load_config(str(path))
    assert config.scheduler_name == "batch" and config.percentage_of_nodes_to_score == 30
    assert "NodePorts" not in config.filters and "NodeReady" in config.filters
    assert config.weights["LeastAllocated"] == 5 and "BalancedAllocation" not in config.weights
    algorithm = Algorithm(config)
    assert [f.name for f in algorithm.filters] == list(config.filters)
    assert {p.name: w for p, w in algorithm.scores} == config.weights
    # Flags override the file.
    assert load_config(str(path), scheduler_name="other").scheduler_name == "other"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plugins:\n  filters:\n    disabled: [NoSuch]\n", "plugins.filters.disabled: unknown filter 'NoSuch'"),
        ("plugins:\n  scores:\n    Bogus: 1\n", "plugins.scores.Bogus: unknown score plugin"),
        ("plugins:\n  scores:\n    LeastAllocated: -1\n", "plugins.scores.LeastAllocated: weight must be"),
        ("percentageOfNodesToScore: 150\n", "percentageOfNodesToScore: must be an integer from 0 to 100"),
        ("scheduler: x\n", "scheduler: unknown field"),
        ("- a list\n", "expected a mapping"),
    ],
    ids=["unknown-filter", "unknown-score", "negative-weight", "bad-percentage", "unknown-field", "not-a-mapping"],
)
def test_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_sampling_follows_kubernetes_rules() -> None:
    adaptive = Algorithm(load_config(None))
    assert adaptive.feasible_to_find(50) == 50  # under 100 nodes: all
    assert adaptive.feasible_to_find(1000) == 420  # 50 % - 1000/125 % = 42 %
    assert adaptive.feasible_to_find(10000) == 500  # floor of 5 %
    assert adaptive.feasible_to_find(150) == 100  # at least 100 nodes
    everything = Algorithm(load_config(None, percentage_of_nodes_to_score=100))
    assert everything.feasible_to_find(1000) == 1000
