"""Hostile pod specs that aimed at the node's files (issue: a ConfigMap item path of ../../../../tmp/x made
root write outside the pod's sandbox; modes like 2541 = 0o4755 made setuid files; '..' in mountPath or
subPath made root create symlinks anywhere).

Each is refused by validation naming the field, and the agent refuses it too for pods stored before the rule
(written to fail on the code before this change: validation accepted every case and the sandbox wrote
../../../../tmp/x). The fuzz checks that whatever validation accepts never creates anything outside the
sandbox and never a mode beyond 0777."""

from __future__ import annotations

import contextlib
import copy
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.api.defaults import apply_defaults
from controlplane.api.errors import InvalidError
from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.api.validation import validate
from nodeagent.sandbox import ConfigError, Sandbox
from tests.helpers import manifest_pod


def pod_with(volume: dict[str, Any], mount: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(manifest_pod("web", "default"))
    doc["spec"]["volumes"] = [{"name": "cfg", **volume}]
    doc["spec"]["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/app", **(mount or {})}]
    return doc


def refusal(doc: dict[str, Any]) -> str:
    obj = from_manifest(doc)
    apply_defaults(obj)
    with pytest.raises(InvalidError) as err:
        validate(obj)
    return err.value.message


ITEMS = {"configMap": {"name": "app", "items": [{"key": "x", "path": "PATH"}]}}

HOSTILE = [
    (pod_with({"configMap": {"name": "app", "items": [{"key": "x", "path": "../../../../tmp/x"}]}}), "items[0].path"),
    (pod_with({"configMap": {"name": "app", "items": [{"key": "x", "path": "a/../../x"}]}}), "must not contain '..'"),
    (pod_with({"configMap": {"name": "app", "items": [{"key": "x", "path": "/etc/cron.d/x"}]}}), "relative path"),
    (pod_with({"secret": {"secretName": "s", "items": [{"key": "x", "path": ".."}]}}), "secret.items[0].path"),
    (pod_with({"configMap": {"name": "app", "defaultMode": 2541}}), "configMap.defaultMode: 2541 (0o4755)"),
    (pod_with({"secret": {"secretName": "s", "items": [{"key": "x", "path": "x", "mode": 0o2755}]}}), "items[0].mode"),
    (pod_with({"emptyDir": {}}, {"subPath": "../../../etc"}), "volumeMounts[0].subPath"),
    (pod_with({"emptyDir": {}}, {"subPath": "/etc"}), "subPath: '/etc' must be a relative path"),
    (pod_with({"emptyDir": {}}, {"mountPath": "/../../../../etc/cron.d"}), "volumeMounts[0].mountPath"),
]


@pytest.mark.parametrize(("doc", "message"), HOSTILE, ids=[m for _, m in HOSTILE])
def test_hostile_paths_and_modes_are_refused_naming_the_field(doc: dict[str, Any], message: str) -> None:
    got = refusal(doc)
    assert message in got, got
    assert got.startswith('Pod "default/web" is invalid')


class OneConfigMap:
    """The one API call the sandbox makes for a configMap volume."""

    def __init__(self, data: dict[str, str]) -> None:
        self.cm = core_pb2.ConfigMap(api_version="v1", kind="ConfigMap")
        self.cm.metadata.name = "app"
        self.cm.data.update(data)

    async def get_by_name(self, kind: str, name: str, namespace: str) -> core_pb2.ConfigMap:
        return self.cm


def stored_pod(items: list[tuple[str, str, int | None]], default_mode: int | None = None) -> core_pb2.Pod:
    """A pod as it may sit in etcd from before validation refused it (not validated here)."""
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace = "web", "default"
    vol = p.spec.volumes.add(name="cfg")
    vol.config_map.name = "app"
    if default_mode is not None:
        vol.config_map.default_mode = default_mode
    for key, path, mode in items:
        item = vol.config_map.items.add(key=key, path=path)
        if mode is not None:
            item.mode = mode
    return p


def entries(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


async def test_the_agent_refuses_an_escaping_item_of_a_pod_stored_before_the_rule(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    sandbox = Sandbox(tmp_path / "pods" / "uid")
    sandbox.create()
    pod = stored_pod([("x", "../../../../outside/x", None)])
    with pytest.raises(ConfigError, match="leaves the volume"):
        await sandbox.prepare_volumes(OneConfigMap({"x": "owned"}), pod)  # type: ignore[arg-type]
    assert entries(outside) == set()


def test_the_agent_refuses_an_escaping_mount_of_a_pod_stored_before_the_rule(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "pods" / "uid")
    sandbox.create()
    c = core_pb2.Container(name="main")
    c.volume_mounts.add(name="cfg", mount_path="/../../../../x")
    with pytest.raises(ConfigError, match="leaves the sandbox"):
        sandbox.link_mounts(c, {"cfg": sandbox.volumes / "cfg"})
    assert not (tmp_path / "x").exists() and not (tmp_path / "pods" / "x").exists()


SEGMENTS = st.sampled_from(["a", "b", "..", ".", "", "/", "c.d", "..."])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.lists(SEGMENTS, min_size=1, max_size=6).map("/".join),
    mode=st.one_of(st.none(), st.integers(min_value=-1, max_value=0o7777)),
)
async def test_fuzz_whatever_validation_accepts_stays_in_the_sandbox(path: str, mode: int | None) -> None:
    item: dict[str, Any] = {"key": "x", "path": path}
    if mode is not None:
        item["mode"] = mode
    doc = pod_with({"configMap": {"name": "app", "items": [item]}})
    obj = from_manifest(doc)
    apply_defaults(obj)
    try:
        validate(obj)
    except InvalidError:
        return  # refused: nothing reaches a node
    assert isinstance(obj, core_pb2.Pod)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sandbox = Sandbox(root / "pods" / "uid")
        sandbox.create()
        # e.g. a path that names a directory is refused: fine, as long as nothing leaked
        with contextlib.suppress(ConfigError, OSError):
            await sandbox.prepare_volumes(OneConfigMap({"x": "data"}), obj)  # type: ignore[arg-type]
        outside = {e for e in entries(root) if not e.startswith("pods")}
        assert outside == set(), f"{path!r} created {outside}"
        for f in sandbox.root.rglob("*"):
            if f.is_file() and not f.is_symlink():
                assert stat.S_IMODE(f.stat().st_mode) <= 0o777, f"{path!r} mode {f.stat().st_mode:o}"
                assert not f.stat().st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX)
    assert os.path.isabs(tmp)
