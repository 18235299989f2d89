"""Node-local volume directories: a claim resolves only to a volume of this node with a plain path, and the
collector removes a deleted volume's directory without following links the workload left in it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from controlplane.api.errors import NotFoundError
from controlplane.api.pb import core_pb2
from nodeagent.localvolumes import LocalVolumes
from nodeagent.sandbox import ConfigError


class FakeClient:
    """Just ``get`` over a dict of objects (kind, namespace, name) -> object."""

    def __init__(self, objects: dict[tuple[type[Any], str, str], Any]) -> None:
        self.objects = objects

    async def get(self, kind: type[Any], name: str, namespace: str = "") -> Any:
        try:
            return self.objects[(kind, namespace, name)]
        except KeyError:
            raise NotFoundError(f"{name} not found") from None


def volume(name: str, node: str, path: str | None = None) -> core_pb2.PersistentVolume:
    pv = core_pb2.PersistentVolume()
    pv.metadata.name = name
    pv.spec.local.path = path if path is not None else name
    pv.spec.node_affinity.required.node_selector_terms.add().match_fields.add(
        key="metadata.name", operator="In", values=[node]
    )
    return pv


def claim(name: str, volume_name: str) -> core_pb2.PersistentVolumeClaim:
    pvc = core_pb2.PersistentVolumeClaim()
    pvc.metadata.name, pvc.metadata.namespace, pvc.metadata.uid = name, "ns", "u1"
    pvc.spec.volume_name = volume_name
    pvc.status.phase = "Bound"
    return pvc


def test_a_claim_resolves_only_to_this_nodes_volume_with_a_plain_path(tmp_path: Path) -> None:
    local = LocalVolumes(tmp_path / "local-volumes", "n1")
    objects: dict[tuple[type[Any], str, str], Any] = {
        (core_pb2.PersistentVolumeClaim, "ns", "mine"): claim("mine", "pv-1"),
        (core_pb2.PersistentVolume, "", "pv-1"): volume("pv-1", "n1"),
        (core_pb2.PersistentVolumeClaim, "ns", "theirs"): claim("theirs", "pv-2"),
        (core_pb2.PersistentVolume, "", "pv-2"): volume("pv-2", "n2"),
        (core_pb2.PersistentVolumeClaim, "ns", "sneaky"): claim("sneaky", "pv-3"),
        (core_pb2.PersistentVolume, "", "pv-3"): volume("pv-3", "n1", path="../../etc"),
    }
    client: Any = FakeClient(objects)
    path = asyncio.run(local.claim_dir(client, "ns", "mine", "data"))
    assert path == tmp_path / "local-volumes" / "pv-1" and path.is_dir()
    assert (tmp_path / "local-volumes").stat().st_mode & 0o777 == 0o711
    with pytest.raises(ConfigError, match="held by another node"):
        asyncio.run(local.claim_dir(client, "ns", "theirs", "data"))
    with pytest.raises(ConfigError, match="unusable local path"):
        asyncio.run(local.claim_dir(client, "ns", "sneaky", "data"))
    with pytest.raises(ConfigError, match="not found"):
        asyncio.run(local.claim_dir(client, "ns", "missing", "data"))


def test_the_collector_removes_a_deleted_volume_and_never_follows_its_links(tmp_path: Path) -> None:
    root = tmp_path / "local-volumes"
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep").write_text("do not delete")
    for name in ("pv-kept", "pv-gone"):
        (root / name).mkdir(parents=True)
    (root / "pv-gone" / "escape").symlink_to(outside)  # what a workload could leave behind
    local = LocalVolumes(root, "n1")
    client: Any = FakeClient({(core_pb2.PersistentVolume, "", "pv-kept"): volume("pv-kept", "n1")})
    assert asyncio.run(local.collect(client)) == ["pv-gone"]
    assert (root / "pv-kept").is_dir() and not (root / "pv-gone").exists()
    assert (outside / "keep").read_text() == "do not delete"
