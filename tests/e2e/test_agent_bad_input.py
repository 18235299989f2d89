"""Pods the agent cannot run say why (status and Event), and the agent keeps serving every other pod."""

from __future__ import annotations

from controlplane.api.objects import from_manifest
from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from tests.e2e.conftest import AgentProcess, eventually_async, pod_manifest, wait_pod


def _running(p: core_pb2.Pod) -> bool:
    return p.status.phase == "Running" and all(s.state.HasField("running") for s in p.status.container_statuses)


async def _event_messages(client: ApiClient, pod: core_pb2.Pod, reason: str) -> list[str]:
    listed = await client.list(
        core_pb2.Event, pod.metadata.namespace, field_selector=f"involvedObject.uid={pod.metadata.uid}"
    )
    return [e.message for e in listed.items if e.reason == reason]


async def test_a_missing_command_an_unusable_working_dir_and_a_missing_key_are_reported(
    client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    settings = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": namespace},
            "data": {"other": "x"},
        }
    )
    await client.create(settings)
    missing = await client.create(
        pod_manifest("no-binary", namespace, agent.node, ["/nonexistent/navarch-test-binary"], restartPolicy="Never")
    )
    bad_dir = await client.create(
        pod_manifest(
            "bad-dir",
            namespace,
            agent.node,
            ["true"],
            restartPolicy="Never",
            container={"workingDir": "/etc/hostname/not-a-dir"},
        )
    )
    no_key = await client.create(
        pod_manifest(
            "no-key",
            namespace,
            agent.node,
            ["sh", "-c", 'echo "mode=$MODE"; sleep 300'],
            container={
                "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}]
            },
        )
    )

    failed = await wait_pod(client, namespace, "no-binary", lambda p: p.status.phase == "Failed")
    term = failed.status.container_statuses[0].state.terminated
    assert term.reason == "StartError" and "/nonexistent/navarch-test-binary" in term.message
    assert "No such file or directory" in term.message

    failed_dir = await wait_pod(client, namespace, "bad-dir", lambda p: p.status.phase == "Failed")
    term = failed_dir.status.container_statuses[0].state.terminated
    assert term.reason == "StartError" and "working directory /etc/hostname/not-a-dir" in term.message

    waiting = await wait_pod(
        client,
        namespace,
        "no-key",
        lambda p: p.status.container_statuses[0].state.waiting.reason == "CreateContainerConfigError",
    )
    message = waiting.status.container_statuses[0].state.waiting.message
    assert message == f"couldn't find key mode in ConfigMap {namespace}/settings"

    async def events_recorded() -> bool:
        return bool(
            await _event_messages(client, missing, "Failed")
            and await _event_messages(client, bad_dir, "Failed")
            and await _event_messages(client, no_key, "Failed")
        )

    await eventually_async(events_recorded, timeout=20)

    # Meanwhile the agent serves other pods as usual.
    await client.create(pod_manifest("fine", namespace, agent.node, ["sleep", "300"]))
    await wait_pod(client, namespace, "fine", _running)

    # Once the key exists the waiting pod starts, without a restart counted.
    live = await client.get(core_pb2.ConfigMap, "settings", namespace)
    live.data["mode"] = "fast"
    await client.update(live)
    started = await wait_pod(client, namespace, "no-key", _running, timeout=30)
    assert started.status.container_statuses[0].restart_count == 0


async def test_config_map_and_secret_volumes_follow_their_objects(
    client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    cm = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "app-config", "namespace": namespace},
            "data": {"level": "info", "extra": "x"},
        }
    )
    secret = from_manifest(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "app-secret", "namespace": namespace},
            "stringData": {"token": "s3cret"},
        }
    )
    await client.create(cm)
    await client.create(secret)
    pod = await client.create(
        pod_manifest(
            "configured",
            namespace,
            agent.node,
            ["sleep", "300"],
            container={
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/app"},
                    {"name": "secret", "mountPath": "/etc/app-secret"},
                ]
            },
            volumes=[
                {"name": "config", "configMap": {"name": "app-config"}},
                {"name": "secret", "secret": {"secretName": "app-secret"}},
            ],
        )
    )
    await wait_pod(client, namespace, "configured", _running)
    volumes = agent.data_dir / "pods" / pod.metadata.uid / "volumes"
    level, token = volumes / "config" / "level", volumes / "secret" / "token"
    assert level.read_text() == "info" and token.read_text() == "s3cret"
    assert level.stat().st_mode & 0o777 == 0o644 and token.stat().st_mode & 0o777 == 0o600
    # The mountPath rule: visible inside the sandbox's work directory at the mount path.
    work = agent.data_dir / "pods" / pod.metadata.uid / "work"
    assert (work / "etc" / "app" / "level").read_text() == "info"

    live = await client.get(core_pb2.ConfigMap, "app-config", namespace)
    live.data["level"] = "debug"
    del live.data["extra"]
    await client.update(live)

    async def refreshed() -> bool:
        return level.read_text() == "debug" and not (volumes / "config" / "extra").exists()

    await eventually_async(refreshed, timeout=20)
