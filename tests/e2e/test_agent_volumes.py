"""docs/agent.md's volume rules on a real agent: ConfigMap ``items`` (key to path), ``defaultMode`` and per-item
``mode``, ``subPath`` appended to ``NAVARCH_VOLUME_<NAME>``, the ``./<mountPath>`` link, and a ``hostPath``
volume seen at its host path (plausible bugs: items ignored and every key written; modes left at 0644;
subPath dropped; a hostPath copied instead of used)."""

from __future__ import annotations

import os
from pathlib import Path

from controlplane.api.objects import from_manifest
from controlplane.client.client import ApiClient
from tests.e2e.conftest import AgentProcess, container_log, pod_manifest, wait_pod

SCRIPT = """
(cd "$NAVARCH_VOLUME_CONF" && find . -type f | sort | while read -r f; do
  echo "file $f $(stat -c %a "$f") $(cat "$f")"
done)
echo "sub $(cat "$NAVARCH_VOLUME_ONE")"
echo "link $(cat ./etc/app/settings/level)"
echo "host $(cat "$NAVARCH_VOLUME_HOST/from-host")"
echo written > "$NAVARCH_VOLUME_HOST/from-pod"
"""


async def test_configmap_items_modes_subpath_and_host_path(
    client: ApiClient, agent: AgentProcess, namespace: str, tmp_path: Path
) -> None:
    host_dir = tmp_path / "host-volume"
    host_dir.mkdir()
    (host_dir / "from-host").write_text("hello-host")
    os.chmod(host_dir, 0o777)  # the workload may run as another user
    await client.create(
        from_manifest(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "app", "namespace": namespace},
                "data": {"level": "debug", "color": "blue", "unlisted": "never-written"},
            }
        )
    )
    mounts = [
        {"name": "conf", "mountPath": "/etc/app"},
        {"name": "one", "mountPath": "/etc/one", "subPath": "settings/level"},
        {"name": "host", "mountPath": "/mnt/host"},
    ]
    items = [{"key": "level", "path": "settings/level"}, {"key": "color", "path": "color", "mode": 0o400}]
    volumes = [
        {"name": "conf", "configMap": {"name": "app", "items": items, "defaultMode": 0o440}},
        {"name": "one", "configMap": {"name": "app", "items": [{"key": "level", "path": "settings/level"}]}},
        {"name": "host", "hostPath": {"path": str(host_dir), "type": "Directory"}},
    ]
    pod = await client.create(
        pod_manifest(
            "vols",
            namespace,
            agent.node,
            ["sh", "-c", SCRIPT],
            restartPolicy="Never",
            container={"volumeMounts": mounts},
            volumes=volumes,
        )
    )
    done = await wait_pod(client, namespace, "vols", lambda p: p.status.phase in ("Succeeded", "Failed"), timeout=60)
    log = container_log(agent, pod)
    assert done.status.phase == "Succeeded", log
    lines = [line.split(" stdout F ", 1)[1] for line in log.splitlines() if " stdout F " in line]
    assert "file ./color 400 blue" in lines and "file ./settings/level 440 debug" in lines, log
    assert not any("unlisted" in line or "never-written" in line for line in lines), log
    assert "sub debug" in lines and "link debug" in lines and "host hello-host" in lines, log
    assert (host_dir / "from-pod").read_text().strip() == "written"  # the host directory itself, not a copy
