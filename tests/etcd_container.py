"""etcd in a Docker container through testcontainers, for ``pytest --etcd=container``.

Only the session's shared etcd moves into the container; tests that kill and restart members
(3-member failover, launcher tests) keep using local processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

IMAGE = os.environ.get("NAVARCH_ETCD_IMAGE", "quay.io/coreos/etcd:v3.5.17")


def docker_unavailable_reason() -> str | None:
    """Why etcd cannot run in a container here, or None when it can."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        return "no Docker engine answers (the docker client alone cannot run containers)"
    return None


class ContainerEtcd:
    """A single etcd member in a container, with the ``endpoints`` the fixtures need."""

    def __init__(self) -> None:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        self._container: Any = (
            DockerContainer(IMAGE)
            .with_exposed_ports(2379)
            .with_command("etcd --listen-client-urls=http://0.0.0.0:2379 --advertise-client-urls=http://0.0.0.0:2379")
        )
        self._container.start()
        wait_for_logs(self._container, "ready to serve client requests", timeout=60)
        host = self._container.get_container_host_ip()
        port = self._container.get_exposed_port(2379)
        self.endpoints = [f"{host}:{port}"]

    def stop(self) -> None:
        """Remove the container."""
        self._container.stop()
