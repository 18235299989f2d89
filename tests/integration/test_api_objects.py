"""Create, Get, Update, UpdateStatus, Patch and Delete through the real API server on a real etcd."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest

from controlplane.api.objects import unwrap, wrap
from controlplane.api.pb import api_pb2
from tests.helpers import Api, configmap, expect_code, obj, pod, rv


async def test_create_assigns_server_fields_and_get_reads_them_back(api: Api, namespace: str) -> None:
    created = unwrap(await api.Create(api_pb2.CreateRequest(object=pod("web", namespace))))
    assert created.metadata.uid and created.metadata.creation_timestamp.seconds > 0
    assert created.metadata.generation == 1 and int(created.metadata.resource_version) > 0
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always"  # defaulted
    got = unwrap(await api.Get(api_pb2.GetRequest(kind="pods", namespace=namespace, name="web")))
    assert got == created


async def test_create_of_a_taken_name_is_already_exists(api: Api, namespace: str) -> None:
    await api.Create(api_pb2.CreateRequest(object=pod("web", namespace)))
    err = await expect_code(
        grpc.StatusCode.ALREADY_EXISTS, api.Create(api_pb2.CreateRequest(object=pod("web", namespace)))
    )
    assert f'Pod "{namespace}/web" already exists' in err.details()


async def test_invalid_objects_name_the_field_and_are_never_stored(api: Api, namespace: str) -> None:
    bad = pod("web", namespace)
    del bad.pod.spec.containers[0].command[:]
    err = await expect_code(grpc.StatusCode.INVALID_ARGUMENT, api.Create(api_pb2.CreateRequest(object=bad)))
    assert f'Pod "{namespace}/web" is invalid: spec.containers[0].command: required' in err.details()
    await expect_code(
        grpc.StatusCode.NOT_FOUND, api.Get(api_pb2.GetRequest(kind="pod", namespace=namespace, name="web"))
    )


async def test_namespaced_objects_need_an_existing_namespace(api: Api) -> None:
    err = await expect_code(grpc.StatusCode.NOT_FOUND, api.Create(api_pb2.CreateRequest(object=pod("web", "nowhere"))))
    assert 'namespace "nowhere" not found' in err.details()


async def test_unknown_kind_lists_the_known_ones(api: Api) -> None:
    err = await expect_code(grpc.StatusCode.NOT_FOUND, api.Get(api_pb2.GetRequest(kind="widgets", name="x")))
    assert "apps/v1/Deployment" in err.details()
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, api.Create(api_pb2.CreateRequest(object=api_pb2.Object())))


async def test_default_namespaces_exist_and_are_protected(api: Api) -> None:
    for name in ("default", "navarch-system"):
        ns = unwrap(await api.Get(api_pb2.GetRequest(kind="ns", name=name)))
        assert ns.status.phase == "Active"
    await expect_code(grpc.StatusCode.PERMISSION_DENIED, api.Delete(api_pb2.DeleteRequest(kind="ns", name="default")))


async def test_two_updates_from_one_resource_version_exactly_one_wins(api: Api, namespace: str) -> None:
    base = await api.Create(api_pb2.CreateRequest(object=configmap("cfg", namespace, {"v": "0"})))
    attempts = []
    for i in range(1, 6):
        change = api_pb2.Object()
        change.CopyFrom(base)
        change.config_map.data["v"] = str(i)
        attempts.append(api.Update(api_pb2.UpdateRequest(object=change)))
    results = await asyncio.gather(*attempts, return_exceptions=True)
    wins = [r for r in results if isinstance(r, api_pb2.Object)]
    losses = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(wins) == 1 and len(losses) == 4
    assert all(e.code() == grpc.StatusCode.ABORTED for e in losses)
    assert "the object has been modified" in losses[0].details()
    stored = unwrap(await api.Get(api_pb2.GetRequest(kind="cm", namespace=namespace, name="cfg")))
    assert stored.data == unwrap(wins[0]).data


async def test_update_without_resource_version_applies_on_the_latest(api: Api, namespace: str) -> None:
    await api.Create(api_pb2.CreateRequest(object=configmap("cfg", namespace, {"v": "0"})))
    blind = configmap("cfg", namespace, {"v": "blind"})
    out = unwrap(await api.Update(api_pb2.UpdateRequest(object=blind)))
    assert out.data["v"] == "blind"


async def test_generation_moves_on_spec_changes_only(api: Api, namespace: str) -> None:
    deploy = obj(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "command": ["sleep", "1"]}]},
                },
            },
        }
    )
    created = await api.Create(api_pb2.CreateRequest(object=deploy))
    assert unwrap(created).spec.replicas == 1 and unwrap(created).spec.strategy.type == "RollingUpdate"
    relabel = await api.Patch(
        api_pb2.PatchRequest(
            kind="deploy", namespace=namespace, name="web", merge_patch=json.dumps({"metadata": {"labels": {"x": "y"}}})
        )
    )
    assert unwrap(relabel).metadata.generation == 1
    scaled = await api.Patch(
        api_pb2.PatchRequest(
            kind="deploy", namespace=namespace, name="web", merge_patch=json.dumps({"spec": {"replicas": 3}})
        )
    )
    assert unwrap(scaled).metadata.generation == 2 and unwrap(scaled).spec.replicas == 3
    assert unwrap(scaled).metadata.labels["x"] == "y"


async def test_update_keeps_status_and_update_status_keeps_spec(api: Api, namespace: str) -> None:
    created = await api.Create(api_pb2.CreateRequest(object=pod("web", namespace)))
    change = api_pb2.Object()
    change.CopyFrom(created)
    change.pod.status.phase = "Running"
    change.pod.spec.active_deadline_seconds = 60
    updated = unwrap(await api.Update(api_pb2.UpdateRequest(object=change)))
    assert updated.status.phase == "Pending" and updated.spec.active_deadline_seconds == 60
    change2 = api_pb2.Object()
    change2.CopyFrom(wrap(updated))
    change2.pod.status.phase = "Running"
    change2.pod.spec.active_deadline_seconds = 5
    status = unwrap(await api.UpdateStatus(api_pb2.UpdateRequest(object=change2)))
    assert status.status.phase == "Running" and status.spec.active_deadline_seconds == 60
    await expect_code(
        grpc.StatusCode.NOT_FOUND, api.UpdateStatus(api_pb2.UpdateRequest(object=configmap("cfg", namespace)))
    )


async def test_pod_command_is_immutable_and_node_name_is_set_once(api: Api, namespace: str) -> None:
    await api.Create(api_pb2.CreateRequest(object=pod("web", namespace)))
    patch = {"spec": {"containers": [{"name": "main", "command": ["other"]}]}}
    err = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        api.Patch(api_pb2.PatchRequest(kind="pod", namespace=namespace, name="web", merge_patch=json.dumps(patch))),
    )
    assert "changed: containers" in err.details()
    bound = await api.Patch(
        api_pb2.PatchRequest(kind="pod", namespace=namespace, name="web", merge_patch='{"spec": {"nodeName": "n1"}}')
    )
    assert unwrap(bound).spec.node_name == "n1"
    err = await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        api.Patch(
            api_pb2.PatchRequest(
                kind="pod", namespace=namespace, name="web", merge_patch='{"spec": {"nodeName": "n2"}}'
            )
        ),
    )
    assert "spec.nodeName: may not be changed once set" in err.details()


async def test_bad_patches_are_invalid_argument(api: Api, namespace: str) -> None:
    await api.Create(api_pb2.CreateRequest(object=configmap("cfg", namespace)))
    for patch, text in (
        ("{not json", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ('{"data": {"k": 5}}', "data"),
        ('{"metadata": {"name": "other"}}', "metadata.name"),
    ):
        err = await expect_code(
            grpc.StatusCode.INVALID_ARGUMENT,
            api.Patch(api_pb2.PatchRequest(kind="cm", namespace=namespace, name="cfg", merge_patch=patch)),
        )
        assert text in err.details()


async def test_scheduled_pods_are_deleted_gracefully(api: Api, namespace: str) -> None:
    await api.Create(api_pb2.CreateRequest(object=pod("web", namespace, nodeName="n1")))
    first = await api.Delete(
        api_pb2.DeleteRequest(kind="pod", namespace=namespace, name="web", grace_period_seconds=30)
    )
    assert not first.deleted
    assert first.object.pod.metadata.deletion_grace_period_seconds == 30
    assert first.object.pod.metadata.HasField("deletion_timestamp")
    still = unwrap(await api.Get(api_pb2.GetRequest(kind="pod", namespace=namespace, name="web")))
    assert still.metadata.HasField("deletion_timestamp")
    final = await api.Delete(api_pb2.DeleteRequest(kind="pod", namespace=namespace, name="web", grace_period_seconds=0))
    assert final.deleted
    await expect_code(
        grpc.StatusCode.NOT_FOUND, api.Get(api_pb2.GetRequest(kind="pod", namespace=namespace, name="web"))
    )


async def test_unscheduled_pods_are_deleted_at_once(api: Api, namespace: str) -> None:
    await api.Create(api_pb2.CreateRequest(object=pod("web", namespace)))
    resp = await api.Delete(api_pb2.DeleteRequest(kind="pod", namespace=namespace, name="web"))
    assert resp.deleted


async def test_finalizers_hold_deletion_until_removed(api: Api, namespace: str) -> None:
    cm = configmap("cfg", namespace)
    cm.config_map.metadata.finalizers.append("example.com/cleanup")
    await api.Create(api_pb2.CreateRequest(object=cm))
    resp = await api.Delete(api_pb2.DeleteRequest(kind="cm", namespace=namespace, name="cfg"))
    assert not resp.deleted and resp.object.config_map.metadata.HasField("deletion_timestamp")
    await api.Patch(
        api_pb2.PatchRequest(
            kind="cm", namespace=namespace, name="cfg", merge_patch='{"metadata": {"finalizers": null}}'
        )
    )
    await expect_code(
        grpc.StatusCode.NOT_FOUND, api.Get(api_pb2.GetRequest(kind="cm", namespace=namespace, name="cfg"))
    )


async def test_delete_preconditions_and_policies_are_checked(api: Api, namespace: str) -> None:
    await api.Create(api_pb2.CreateRequest(object=configmap("cfg", namespace)))
    await expect_code(
        grpc.StatusCode.ABORTED,
        api.Delete(
            api_pb2.DeleteRequest(
                kind="cm", namespace=namespace, name="cfg", preconditions=api_pb2.Preconditions(uid="other")
            )
        ),
    )
    await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        api.Delete(api_pb2.DeleteRequest(kind="cm", namespace=namespace, name="cfg", propagation_policy="Sideways")),
    )
    orphan = await api.Delete(
        api_pb2.DeleteRequest(kind="cm", namespace=namespace, name="cfg", propagation_policy="Orphan")
    )
    assert not orphan.deleted and list(orphan.object.config_map.metadata.finalizers) == ["orphan"]


async def test_dry_run_validates_without_storing(api: Api, namespace: str) -> None:
    out = await api.Create(api_pb2.CreateRequest(object=pod("web", namespace), dry_run="All"))
    assert out.pod.metadata.uid
    await expect_code(
        grpc.StatusCode.NOT_FOUND, api.Get(api_pb2.GetRequest(kind="pod", namespace=namespace, name="web"))
    )
    await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        api.Create(api_pb2.CreateRequest(object=pod("web", namespace), dry_run="Some")),
    )


async def test_secret_string_data_is_stored_as_data(api: Api, namespace: str) -> None:
    secret = obj(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "namespace": namespace},
            "stringData": {"password": "hunter2"},
        }
    )
    out = unwrap(await api.Create(api_pb2.CreateRequest(object=secret)))
    assert out.data["password"] == b"hunter2" and not out.string_data and out.type == "Opaque"


async def test_deleting_a_namespace_with_objects_marks_it_terminating(api: Api, namespace: str) -> None:
    await api.Create(api_pb2.CreateRequest(object=configmap("cfg", namespace)))
    resp = await api.Delete(api_pb2.DeleteRequest(kind="ns", name=namespace))
    assert not resp.deleted and resp.object.namespace.status.phase == "Terminating"
    err = await expect_code(
        grpc.StatusCode.PERMISSION_DENIED, api.Create(api_pb2.CreateRequest(object=configmap("more", namespace)))
    )
    assert "is being terminated" in err.details()


@pytest.mark.parametrize("kind", ["Node", "Lease", "Event", "Endpoints", "Service", "Job", "DaemonSet", "ReplicaSet"])
async def test_every_kind_round_trips(api: Api, namespace: str, kind: str) -> None:
    tmpl: dict[str, Any] = {
        "metadata": {"labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "command": ["true"]}], "restartPolicy": "Never"},
    }
    docs: dict[str, dict[str, Any]] = {
        "Node": {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": f"node-{namespace}"},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi"}},
        },
        "Lease": {
            "apiVersion": "coordination/v1",
            "kind": "Lease",
            "metadata": {"name": "l", "namespace": namespace},
            "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15},
        },
        "Event": {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e", "namespace": namespace},
            "involvedObject": {"kind": "Pod", "name": "web"},
            "reason": "Started",
            "type": "Normal",
        },
        "Endpoints": {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": namespace},
            "subsets": [{"addresses": [{"ip": "127.0.0.2"}], "ports": [{"port": 80}]}],
        },
        "Service": {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]},
        },
        "Job": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j", "namespace": namespace},
            "spec": {"template": tmpl},
        },
        "DaemonSet": {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "d", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": {"app": "a"}},
                "template": {**tmpl, "spec": {**tmpl["spec"], "restartPolicy": "Always"}},
            },
        },
        "ReplicaSet": {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "r", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": {"app": "a"}},
                "template": {**tmpl, "spec": {**tmpl["spec"], "restartPolicy": "Always"}},
            },
        },
    }
    created = await api.Create(api_pb2.CreateRequest(object=obj(docs[kind])))
    m = unwrap(created).metadata
    got = await api.Get(api_pb2.GetRequest(kind=kind, namespace=m.namespace, name=m.name))
    assert got == created and rv(got) > 0
    if kind == "Node":
        assert unwrap(got).status.capacity["cpu"] == "4"  # nodes register with their status
    if kind == "Job":
        assert unwrap(got).spec.selector.match_labels["controller-uid"] == m.uid
