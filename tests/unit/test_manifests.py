import pytest

from controlplane.api import kinds
from controlplane.api.errors import InvalidError
from controlplane.api.objects import from_manifest, to_manifest
from controlplane.api.patches import merge_patch
from tests.helpers import manifest_pod


def test_a_kubernetes_deployment_manifest_reads_as_is() -> None:
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "command": ["python3", "-m", "http.server"],
                            "args": ["8080"],
                            "env": [{"name": "MODE", "value": "prod"}],
                            "workingDir": "/tmp",
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
                        }
                    ],
                    "terminationGracePeriodSeconds": 10,
                },
            },
        },
    }
    d = from_manifest(doc)
    assert to_manifest(d) == doc


def test_service_fields_keep_kubernetes_spelling() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"clusterIP": "None", "ports": [{"port": 80, "targetPort": "http"}], "selector": {"app": "web"}},
    }
    assert to_manifest(from_manifest(doc)) == doc


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [("v2", "Pod"), ("apps/v1", "Pod"), ("v1", "Deployment"), ("v1", "Widget")],
)
def test_unknown_apiversion_kind_pairs_list_the_known_ones(api_version: str, kind: str) -> None:
    with pytest.raises(InvalidError) as err:
        from_manifest({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}})
    assert "known apiVersion/kind pairs" in err.value.message
    assert "apps/v1/Deployment" in err.value.message and "batch/v1/Job" in err.value.message


def test_unknown_fields_are_reported_by_path() -> None:
    doc = manifest_pod("web", "default")
    doc["spec"]["containers"][0]["imagePullSecrets"] = []
    with pytest.raises(InvalidError, match=r'Pod "web": spec.containers\[0\].imagePullSecrets: unknown field'):
        from_manifest(doc, where="pods.yaml[0]")


def test_wrong_types_are_reported_by_path() -> None:
    doc = manifest_pod("web", "default")
    doc["spec"]["terminationGracePeriodSeconds"] = "soon"
    with pytest.raises(InvalidError, match=r"spec.terminationGracePeriodSeconds"):
        from_manifest(doc)


def test_where_prefix_names_file_and_document() -> None:
    with pytest.raises(InvalidError, match=r"^app.yaml\[2\]: kind: required"):
        from_manifest({"apiVersion": "v1"}, where="app.yaml[2]")


def test_merge_patch_follows_rfc7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "l": [3], "n": {"x": 1}}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}}
    assert target["c"] == {"d": "e", "f": "g"}  # the input is not modified


def test_every_kind_has_a_kubernetes_api_version() -> None:
    expected = {
        "Deployment": "apps/v1",
        "ReplicaSet": "apps/v1",
        "DaemonSet": "apps/v1",
        "Job": "batch/v1",
        "Lease": "coordination/v1",
        "Pod": "v1",
        "Service": "v1",
        "Namespace": "v1",
    }
    for kind, api_version in expected.items():
        assert kinds.lookup(kind).api_version == api_version
    assert kinds.lookup("deploy").kind == "Deployment"
    assert kinds.lookup("PODS").kind == "Pod"
