"""The gRPC API's side of field validation, seen with a real client (grpcurl -v prints trailers): warnings come
back as ``warning`` trailing metadata (Kubernetes' Warning headers), and Patch honours fieldValidation."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Mapping

import pytest

from controlplane.apiserver.main import ApiServer
from controlplane.client.client import ApiClient, ClientConfig
from tests.integration.test_apiserver_process import _grpcurl


def grpcurl(server: ApiServer, method: str, body: Mapping[str, object]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            _grpcurl(),
            "-plaintext",
            "-v",
            "-d",
            json.dumps(body),
            f"127.0.0.1:{server.port}",
            f"navarch.v1.Api/{method}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def trailers(out: str) -> list[str]:
    """The ``warning`` trailers grpcurl -v printed."""
    after = out.split("Response trailers received:", 1)[-1]
    return [line.split(":", 1)[1].strip() for line in after.splitlines() if line.startswith("warning:")]


def pod(namespace: str, name: str, **container: object) -> dict[str, object]:
    spec = {"containers": [{"name": "main", "command": ["sleep", "1"], **container}]}
    return {"object": {"pod": {"metadata": {"name": name, "namespace": namespace}, "spec": spec}}}


async def test_create_warns_about_fields_it_keeps_but_ignores(apiserver: ApiServer, namespace: str) -> None:
    out = await asyncio.to_thread(grpcurl, apiserver, "Create", pod(namespace, "imaged", image="nginx:1.27"))
    assert out.returncode == 0, out.stderr
    assert trailers(out.stdout) == [
        f'Pod "{namespace}/imaged": spec.containers[0].image: ignored '
        "(no container runtime: a container is command + args on the host)"
    ]
    plain = await asyncio.to_thread(grpcurl, apiserver, "Create", pod(namespace, "plain"))
    assert plain.returncode == 0 and trailers(plain.stdout) == []


@pytest.mark.parametrize(
    ("policy", "refused", "warned"),
    [("Strict", True, False), ("Warn", False, True), ("", False, True), ("Ignore", False, False)],
)
async def test_patch_field_validation(
    apiserver: ApiServer, namespace: str, policy: str, refused: bool, warned: bool
) -> None:
    name = f"p-{policy.lower() or 'default'}"
    assert (await asyncio.to_thread(grpcurl, apiserver, "Create", pod(namespace, name))).returncode == 0
    patch = {"metadata": {"labels": {"patched": "yes"}}, "spec": {"dnsPolicy": "None", "bogusField": 1}}
    request = {"kind": "pods", "namespace": namespace, "name": name, "merge_patch": json.dumps(patch)}
    if policy:
        request["field_validation"] = policy
    out = await asyncio.to_thread(grpcurl, apiserver, "Patch", request)
    if refused:
        assert (
            out.returncode != 0 and "InvalidArgument" in out.stderr and "spec.bogusField: unknown field" in out.stderr
        )
        return
    assert out.returncode == 0, out.stderr
    found = trailers(out.stdout)
    assert any("spec.dnsPolicy: ignored" in w for w in found) == (policy != "Ignore")
    assert any('unknown field "spec.bogusField"' in w for w in found) == warned
    assert '"patched": "yes"' in out.stdout


async def test_an_unknown_policy_is_invalid_argument(apiserver: ApiServer, namespace: str) -> None:
    assert (await asyncio.to_thread(grpcurl, apiserver, "Create", pod(namespace, "q"))).returncode == 0
    request = {"kind": "pods", "namespace": namespace, "name": "q", "merge_patch": "{}", "field_validation": "Loose"}
    out = await asyncio.to_thread(grpcurl, apiserver, "Patch", request)
    assert out.returncode != 0 and "InvalidArgument" in out.stderr and "fieldValidation" in out.stderr


async def test_the_python_client_hands_warnings_to_its_handler(apiserver: ApiServer, namespace: str) -> None:
    seen: list[str] = []
    config = ClientConfig(endpoints=[f"127.0.0.1:{apiserver.port}"], warning_handler=seen.append)
    async with ApiClient(config) as client:
        await asyncio.to_thread(grpcurl, apiserver, "Create", pod(namespace, "h"))
        await client.patch("Pod", "h", {"spec": {"hostNetwork": True}}, namespace)
    assert seen == [
        'Pod "h": spec.hostNetwork: ignored (processes share the node\'s network; there is no pod network or DNS)'
    ]
