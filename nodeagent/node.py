"""The agent's Node: registration (or re-adoption), Lease heartbeat, and conditions.

::

    register():  create the Node, or take over the existing one (spec.taints/labels merged, status rewritten)
    heartbeat(): renew navarch-node-lease/<node> every lease_interval (guarded by resourceVersion)
    conditions:  Ready, MemoryPressure, DiskPressure, PIDPressure written when they change, and at least
                 every status_interval
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import socket
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import version as dist_version
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.api import namespaces
from controlplane.api.errors import (
    AlreadyExistsError,
    ApiError,
    ConflictError,
    DeadlineError,
    NotFoundError,
    UnavailableError,
)
from controlplane.api.pb import coordination_pb2, core_pb2, meta_pb2
from controlplane.api.quantity import parse_quantity
from controlplane.api.volumes import LOCAL_STORAGE
from controlplane.client.client import ApiClient
from nodeagent.config import AgentConfig
from nodeagent.pressure import meminfo, node_conditions, sample_host

log = logging.getLogger(__name__)

LEASE_NAMESPACE = namespaces.NODE_LEASE


def now() -> Timestamp:
    """The current time as a protobuf Timestamp."""
    ts = Timestamp()
    ts.FromDatetime(datetime.now(UTC))
    return ts


def address_towards(server: str) -> str:
    """The local address used to reach ``host:port`` (the default node IP)."""
    host, _, port = server.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((host.strip("[]") or "127.0.0.1", int(port or 6443)))
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def detected_capacity(data_dir: Path | None = None) -> dict[str, str]:
    """CPU count, memory and the default pod limit of this host; with ``data_dir``, the size of its file
    system as the room for local persistent volumes."""
    mem = meminfo().get("MemTotal", 0)
    out = {"cpu": str(os.cpu_count() or 1), "memory": f"{mem // 1024}Ki", "pods": "110"}
    if data_dir is not None:
        try:
            st = os.statvfs(data_dir)
            out[LOCAL_STORAGE] = str(st.f_blocks * st.f_frsize)
        except OSError:
            pass
    return out


def allocatable(capacity: dict[str, str], reserved: dict[str, str]) -> dict[str, str]:
    """Capacity minus the reserve, per resource (never negative)."""
    out = dict(capacity)
    for name, held in reserved.items():
        if name not in capacity:
            continue
        left = max(parse_quantity(capacity[name]) - parse_quantity(held), Decimal(0))
        out[name] = f"{int(left * 1000)}m" if name == "cpu" else str(int(left))
    return out


def _os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


class NodeManager:
    """Registers the Node, keeps its Lease fresh and its conditions current."""

    def __init__(self, client: ApiClient, config: AgentConfig, *, agent_port: int) -> None:
        self.client = client
        self.config = config
        self.agent_port = agent_port
        self._last_conditions: list[tuple[str, str, str]] = []
        self._written_conditions: list[meta_pb2.Condition] = []
        self._last_status_write = 0.0
        self._lease: coordination_pb2.Lease | None = None

    def desired_node(self) -> core_pb2.Node:
        """The Node as this agent describes it."""
        cfg = self.config
        node = core_pb2.Node(api_version="v1", kind="Node")
        node.metadata.name = cfg.node_name
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        node.metadata.labels.update(
            {
                "navarch.io/hostname": cfg.node_name,
                "navarch.io/os": platform.system().lower(),
                "navarch.io/arch": arch,
                **cfg.labels,
            }
        )
        for key, value, effect in cfg.taints:
            node.spec.taints.add(key=key, value=value, effect=effect)
        capacity = {**detected_capacity(cfg.data_dir), **cfg.capacity}
        node.status.capacity.update(capacity)
        node.status.allocatable.update(allocatable(capacity, cfg.reserved))
        node.status.addresses.add(type="InternalIP", address=cfg.node_ip)
        node.status.addresses.add(type="Hostname", address=socket.gethostname())
        info = node.status.node_info
        info.kernel_version = platform.release()
        info.os_image = _os_image()
        info.operating_system = platform.system().lower()
        info.architecture = arch
        info.agent_version = dist_version("navarch")
        info.machine_id = _read("/etc/machine-id")
        info.boot_id = _read("/proc/sys/kernel/random/boot_id")
        node.status.daemon_endpoints.agent_endpoint.port = self.agent_port
        node.status.daemon_endpoints.agent_endpoint.address = cfg.node_ip
        node.status.conditions.extend(self.conditions())
        node.status.phase = "Running"
        return node

    def conditions(self) -> list[meta_pb2.Condition]:
        """Ready and the pressure conditions, measured now (transition times kept from the last write)."""
        sample = sample_host(Path(self.config.data_dir))
        return node_conditions(sample, str(self.config.data_dir), now(), self._written_conditions)

    async def register_with_retry(self, max_delay: float = 30.0) -> core_pb2.Node:
        """``register``, retried with back-off while the API server cannot be reached (it may start later)."""
        delay = 0.5
        while True:
            try:
                return await self.register()
            except (UnavailableError, DeadlineError) as err:
                log.warning("registering node %s: %s; retrying in %.1fs", self.config.node_name, err.message, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)

    async def register(self) -> core_pb2.Node:
        """Create the Node, or take over an existing one of the same name."""
        desired = self.desired_node()
        try:
            node = await self.client.create(desired)
            self._remember(node)
            return node
        except AlreadyExistsError:
            pass
        for _ in range(10):
            current = await self.client.get(core_pb2.Node, self.config.node_name)
            updated = core_pb2.Node()
            updated.CopyFrom(current)
            updated.metadata.labels.update(desired.metadata.labels)
            keep = [t for t in current.spec.taints if not any(t.key == d.key for d in desired.spec.taints)]
            del updated.spec.taints[:]
            updated.spec.taints.extend([*keep, *desired.spec.taints])
            try:
                updated = await self.client.update(updated)
                updated.status.CopyFrom(desired.status)
                node = await self.client.update_status(updated)
                self._remember(node)
                return node
            except ConflictError:
                continue
        raise ConflictError(f'could not take over Node "{self.config.node_name}": it keeps changing')

    def _remember(self, node: core_pb2.Node) -> None:
        self._last_conditions = [(c.type, c.status, c.reason) for c in node.status.conditions]
        self._written_conditions = list(node.status.conditions)
        self._last_status_write = asyncio.get_running_loop().time()

    async def renew_lease(self) -> None:
        """Create or renew the node's Lease (one attempt). The last Lease written is kept, so a renewal is one
        guarded Update; it is read again only when that fails (someone else wrote it, or it is gone), as
        Kubernetes' node lease controller does."""
        cfg = self.config
        lease = self._lease
        if lease is None:
            try:
                lease = await self.client.get(coordination_pb2.Lease, cfg.node_name, LEASE_NAMESPACE)
            except NotFoundError:
                lease = coordination_pb2.Lease(api_version="coordination/v1", kind="Lease")
                lease.metadata.name, lease.metadata.namespace = cfg.node_name, LEASE_NAMESPACE
                lease.spec.holder_identity = cfg.node_name
                lease.spec.lease_duration_seconds = cfg.lease_duration
                lease.spec.renew_time.CopyFrom(now())
                with contextlib.suppress(AlreadyExistsError):  # another instance of us won the race
                    self._lease = await self.client.create(lease)
                return
        renewed = coordination_pb2.Lease()
        renewed.CopyFrom(lease)
        renewed.spec.holder_identity = cfg.node_name
        renewed.spec.lease_duration_seconds = cfg.lease_duration
        renewed.spec.renew_time.CopyFrom(now())
        try:
            self._lease = await self.client.update(renewed)
        except (ConflictError, NotFoundError):
            self._lease = None
            await self.renew_lease()  # read it again and renew at once (no deeper: nothing is cached now)

    async def update_conditions(self, force: bool = False) -> None:
        """Write the Node's conditions if they changed (or the interval passed)."""
        current = self.conditions()
        key = [(c.type, c.status, c.reason) for c in current]
        due = asyncio.get_running_loop().time() - self._last_status_write >= self.config.status_interval
        if not force and key == self._last_conditions and not due:
            return
        patch = {
            "status": {
                "conditions": [
                    {
                        "type": c.type,
                        "status": c.status,
                        "reason": c.reason,
                        "message": c.message,
                        "lastProbeTime": c.last_probe_time.ToJsonString(),
                        "lastTransitionTime": c.last_transition_time.ToJsonString(),
                    }
                    for c in current
                ]
            }
        }
        node = await self.client.patch(core_pb2.Node, self.config.node_name, patch, status=True)
        self._remember(node)

    async def run(self) -> None:
        """Heartbeat and conditions until cancelled (errors are logged and retried next round)."""
        loop = asyncio.get_running_loop()
        cut_off = False
        last_ok = loop.time()
        while True:
            try:
                await self.renew_lease()
                # Back after a failure or a long silence (a call that hung while the network was cut): the
                # node lifecycle controller may have marked us Unknown meanwhile, so say Ready again at once.
                silent = loop.time() - last_ok > 2 * self.config.lease_interval + 1
                await self.update_conditions(force=cut_off or silent)
                cut_off = False
                last_ok = loop.time()
            except ApiError as err:
                log.warning("node heartbeat: %s", err.message)
                cut_off = True
            await asyncio.sleep(self.config.lease_interval)
