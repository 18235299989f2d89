"""The agent's gRPC endpoint: container logs, exec and port-forward, for the API server's proxy only.

With TLS the endpoint requires a client certificate signed by the cluster CA and answers only the API
server's (``CN=system:apiserver``). In plain-text mode (loopback, ``navarch up``) callers are admitted by
source address: the networks given with ``--proxy-from``, by default the addresses of the API servers the agent
was given (``--server``). Everyone else gets PERMISSION_DENIED.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import pty
import signal
import socket
import struct
import termios
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.api.errors import ApiError, ForbiddenError, InvalidError, NotFoundError, PreconditionError
from controlplane.api.pb import metrics_pb2, podaccess_pb2, podaccess_pb2_grpc
from controlplane.certinfo import APISERVER_USER
from nodeagent.logs import LogOptions, follow, instance_files, iter_instance, limited
from nodeagent.pod.worker import PodWorker
from nodeagent.portowner import owned_listener
from nodeagent.runas import command_as

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
"""Seconds a port-forward's connection to the pod's port may take."""
FORWARD_CHUNK = 64 * 1024

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def allowed_networks(servers: Sequence[str], proxy_from: Iterable[str]) -> list[Network]:
    """``proxy_from`` as networks if given, else the API servers' addresses (resolved)."""
    nets: list[Network] = [ipaddress.ip_network(n, strict=False) for n in proxy_from]
    if nets:
        return nets
    for server in servers:
        host = server.rpartition(":")[0].strip("[]") or server
        with contextlib.suppress(OSError):
            for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP):
                nets.append(ipaddress.ip_network(info[4][0]))
    return nets


def _set_size(fd: int, size: podaccess_pb2.TerminalSize) -> None:
    """Set a terminal's window size (the kernel tells its foreground process group with SIGWINCH)."""
    rows, cols = min(size.rows or 24, 10_000), min(size.cols or 80, 10_000)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def peer_ip(context: grpc.aio.ServicerContext) -> str:
    """The caller's IP from gRPC's peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``)."""
    peer = str(context.peer())
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return ""


class AgentAccessService(podaccess_pb2_grpc.AgentServicer):
    """ContainerLogs and Exec over the pods this agent runs."""

    def __init__(
        self,
        workers: Callable[[], Iterable[PodWorker]],
        allowed: list[Network],
        node_name: str,
        *,
        tls: bool = False,
        usage: Callable[[], metrics_pb2.UsageReport | None] = lambda: None,
    ) -> None:
        self._workers = workers
        self._usage = usage
        self._allowed = allowed
        self._node = node_name
        self._tls = tls

    def _admit(self, context: grpc.aio.ServicerContext) -> None:
        if self._tls:
            names = (context.auth_context() or {}).get("x509_common_name") or [b""]
            caller = names[0].decode(errors="replace") if isinstance(names[0], bytes) else str(names[0])
            if caller != APISERVER_USER:
                raise ForbiddenError(
                    f"node {self._node}: the agent answers only the API server ({APISERVER_USER}), not {caller!r}"
                )
            return
        ip = peer_ip(context)
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            addr = None
        if addr is None or not any(addr in net for net in self._allowed):
            raise ForbiddenError(
                f"node {self._node}: the agent answers only the API server (caller {ip or context.peer()})"
            )

    def _find(
        self, namespace: str, name: str, uid: str, container: str = "", *, worker_only: bool = False
    ) -> tuple[PodWorker, str]:
        for worker in self._workers():
            m = worker.pod.metadata
            if m.namespace == namespace and m.name == name and (not uid or m.uid == uid):
                break
        else:
            raise NotFoundError(f'pod "{name}" in namespace "{namespace}" is not on node {self._node}')
        if worker_only:
            return worker, ""
        names = worker.container_names()
        if not container:
            main = [c.name for c in worker.pod.spec.containers]
            if len(main) != 1:
                raise InvalidError(
                    f'pod "{name}" has {len(main)} containers; choose one of {", ".join(main)}', field="container"
                )
            container = main[0]
        if container not in names:
            raise InvalidError(
                f'"{container}" is not a container of pod "{name}" (it has {", ".join(names)})', field="container"
            )
        return worker, container

    async def ContainerLogs(
        self, request: podaccess_pb2.PodLogRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[podaccess_pb2.PodLogChunk]:
        try:
            self._admit(context)
            async for chunk in self._logs(request):
                yield chunk
        except ApiError as err:
            await context.abort(err.code, err.message)

    async def Exec(
        self, request_iterator: AsyncIterator[podaccess_pb2.PodExecInput], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[podaccess_pb2.PodExecOutput]:
        try:
            self._admit(context)
            async for frame in self._exec(request_iterator):
                yield frame
        except ApiError as err:
            await context.abort(err.code, err.message)

    async def Usage(
        self, request: metrics_pb2.UsageRequest, context: grpc.aio.ServicerContext
    ) -> metrics_pb2.UsageReport:
        try:
            self._admit(context)
            report = self._usage()
            if report is None:
                raise PreconditionError(f"node {self._node}: no usage sample yet (the first comes within seconds)")
            return report
        except ApiError as err:
            await context.abort(err.code, err.message)
            raise AssertionError("unreachable: abort raises") from None

    async def PortForward(
        self, request_iterator: AsyncIterator[podaccess_pb2.PortForwardFrame], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[podaccess_pb2.PortForwardFrame]:
        try:
            self._admit(context)
            async for frame in self._port_forward(request_iterator):
                yield frame
        except ApiError as err:
            await context.abort(err.code, err.message)

    async def _port_forward(
        self, frames: AsyncIterator[podaccess_pb2.PortForwardFrame]
    ) -> AsyncIterator[podaccess_pb2.PortForwardFrame]:
        first = await anext(aiter(frames), None)
        if first is None or first.WhichOneof("frame") != "start":
            raise InvalidError("the first frame of a port-forward stream must be start", field="start")
        start = first.start
        if not 1 <= start.port <= 65535:
            raise InvalidError(f"port: {start.port} must be between 1 and 65535", field="port")
        worker, _ = self._find(start.namespace, start.name, start.uid, worker_only=True)
        host = await asyncio.to_thread(owned_listener, worker.shim_pids, start.port)
        if host is None:
            raise PreconditionError(
                f'pod "{start.name}" has no process listening on port {start.port} (only its own ports can be '
                "forwarded)"
            )
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, start.port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as err:
            raise PreconditionError(f'pod "{start.name}": connecting to port {start.port}: {err}') from None
        log.info("port-forward to %s/%s:%d", start.namespace, start.name, start.port)

        async def feed() -> None:
            async for frame in frames:
                kind = frame.WhichOneof("frame")
                if kind == "data":
                    writer.write(frame.data)
                    await writer.drain()
                elif kind == "eof":
                    break
            with contextlib.suppress(OSError):
                writer.write_eof()  # the client is done sending; the port may still answer

        feeder = asyncio.create_task(feed())
        try:
            while chunk := await reader.read(FORWARD_CHUNK):
                yield podaccess_pb2.PortForwardFrame(data=chunk)
            yield podaccess_pb2.PortForwardFrame(eof=True)
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _exec_tty(
        self,
        start: podaccess_pb2.PodExecStart,
        worker: PodWorker,
        container: str,
        frames: AsyncIterator[podaccess_pb2.PodExecInput],
    ) -> AsyncIterator[podaccess_pb2.PodExecOutput]:
        """``exec -t``: the command on a pseudo-terminal it controls; stdin frames are typed into it (Ctrl-C
        is the line discipline's, so it interrupts the foreground job), resize frames change its window."""
        env, cwd = worker.exec_env[container]
        env = {"TERM": "xterm", **env}
        launch = command_as(
            worker.exec_identity.get(container),
            list(start.command),
            env,
            worker.exec_cgroups.get(container, []),
            tty=True,
        )
        master, slave = pty.openpty()
        _set_size(master, start.size)
        run_as = worker.exec_identity.get(container)
        if run_as is not None and run_as.uid is not None and os.geteuid() == 0:
            os.fchown(slave, run_as.uid, -1)  # the terminal is the command's, as login gives it
        try:
            proc = await asyncio.create_subprocess_exec(
                *launch.argv,
                env=launch.env,
                cwd=cwd,
                pass_fds=launch.pass_fds,
                stdin=slave,
                stdout=slave,
                stderr=slave,
            )
        except OSError as err:
            os.close(master)
            yield podaccess_pb2.PodExecOutput(stdout=f"{start.command[0]}: {err.strerror or err}\r\n".encode())
            yield podaccess_pb2.PodExecOutput(exit_code=127 if isinstance(err, FileNotFoundError) else 126)
            return
        finally:
            launch.close()
            os.close(slave)
        log.info("exec -t in %s/%s[%s]: %s", start.namespace, start.name, container, start.command[0])
        loop = asyncio.get_running_loop()
        output: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)
        os.set_blocking(master, False)

        def readable() -> None:
            try:
                data = os.read(master, 32 * 1024)
            except BlockingIOError:
                return
            except OSError:  # EIO: every process holding the terminal is gone
                data = b""
            item = data or None  # None: the end
            if output.full():
                loop.remove_reader(master)  # back-pressure: resumed once the stream has taken some
                pending.append(item)
                return
            output.put_nowait(item)
            if item is None:
                loop.remove_reader(master)

        pending: list[bytes | None] = []

        async def feed() -> None:
            async for frame in frames:
                kind = frame.WhichOneof("frame")
                if kind == "stdin":
                    view = memoryview(frame.stdin)
                    while view:
                        try:
                            view = view[os.write(master, view) :]
                        except BlockingIOError:
                            await asyncio.sleep(0.01)
                elif kind == "resize":
                    _set_size(master, frame.resize)
                elif kind == "stdin_eof":
                    with contextlib.suppress(OSError):
                        os.write(master, b"\x04")  # a terminal's end of input is ^D
                    return

        loop.add_reader(master, readable)
        feeder = asyncio.create_task(feed())
        try:
            while (chunk := await output.get()) is not None:
                yield podaccess_pb2.PodExecOutput(stdout=chunk)
                if pending and not output.full():
                    item = pending.pop()
                    output.put_nowait(item)
                    if item is not None:
                        loop.add_reader(master, readable)
            code = await proc.wait()
            yield podaccess_pb2.PodExecOutput(exit_code=code if code >= 0 else 128 - code)
        finally:
            loop.remove_reader(master)
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            os.close(master)

    async def _logs(self, request: podaccess_pb2.PodLogRequest) -> AsyncIterator[podaccess_pb2.PodLogChunk]:
        worker, container = self._find(request.namespace, request.name, request.uid, request.container)
        since = ""
        if request.HasField("since_time"):
            since = request.since_time.ToJsonString()
        elif request.since_seconds > 0:
            ts = Timestamp()
            ts.GetCurrentTime()
            ts.FromNanoseconds(ts.ToNanoseconds() - request.since_seconds * 1_000_000_000)
            since = ts.ToJsonString()
        options = LogOptions(
            tail=request.tail_lines if request.HasField("tail_lines") and request.tail_lines >= 0 else None,
            timestamps=request.timestamps,
            since=since,
        )
        cdir = worker.container_dir(container)
        state = worker.log_state(container)
        limit = request.limit_bytes if request.HasField("limit_bytes") else None
        if limit is not None and limit < 1:
            raise InvalidError(f"limitBytes: {limit} must be at least 1", field="limitBytes")
        if request.previous:
            instance = state.instance - 1
            if instance < 0 or not instance_files(cdir, instance):
                raise NotFoundError(f'previous terminated container "{container}" in pod "{request.name}" not found')
            for data in limited(iter_instance(cdir, instance, options), limit):
                yield podaccess_pb2.PodLogChunk(data=data)
            return
        if not request.follow:
            for data in limited(iter_instance(cdir, state.instance, options), limit):
                yield podaccess_pb2.PodLogChunk(data=data)
            return
        left = limit
        async for chunk in follow(cdir, state.instance, options, lambda: worker.log_state(container)):
            if left is not None:
                chunk = chunk[:left]
                left -= len(chunk)
            yield podaccess_pb2.PodLogChunk(data=chunk)
            if left is not None and left <= 0:
                return

    async def _exec(
        self, request_iterator: AsyncIterator[podaccess_pb2.PodExecInput]
    ) -> AsyncIterator[podaccess_pb2.PodExecOutput]:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("frame") != "start":
            raise InvalidError("the first frame of an exec stream must be start", field="start")
        start = first.start
        worker, container = self._find(start.namespace, start.name, start.uid, start.container)
        if not start.command:
            raise InvalidError("a command to run is required", field="command")
        env_cwd = worker.exec_env.get(container)
        if env_cwd is None or not worker.log_state(container).running:
            raise PreconditionError(f'container "{container}" of pod "{start.name}" is not running')
        env, cwd = env_cwd
        if start.tty:
            async for frame in self._exec_tty(start, worker, container, request_iterator):
                yield frame
            return
        # The command runs as the container does, never as the (root) agent; the helper that drops
        # privileges gets the container's environment through a file descriptor, not its own environment.
        launch = command_as(
            worker.exec_identity.get(container), list(start.command), env, worker.exec_cgroups.get(container, [])
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                *launch.argv,
                env=launch.env,
                cwd=cwd,
                pass_fds=launch.pass_fds,
                stdin=asyncio.subprocess.PIPE if start.stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as err:
            # What a shell would say and return: 127 not found, 126 not executable.
            code = 127 if isinstance(err, FileNotFoundError) else 126
            yield podaccess_pb2.PodExecOutput(stderr=f"{start.command[0]}: {err.strerror or err}\n".encode())
            yield podaccess_pb2.PodExecOutput(exit_code=code)
            return
        finally:
            launch.close()
        log.info("exec in %s/%s[%s]: %s", start.namespace, start.name, container, start.command[0])
        outputs: asyncio.Queue[podaccess_pb2.PodExecOutput | None] = asyncio.Queue(maxsize=64)

        async def pump(stream: asyncio.StreamReader | None, to_stderr: bool) -> None:
            assert stream is not None
            while chunk := await stream.read(32 * 1024):
                out = podaccess_pb2.PodExecOutput
                await outputs.put(out(stderr=chunk) if to_stderr else out(stdout=chunk))
            await outputs.put(None)

        async def feed() -> None:
            assert proc.stdin is not None
            async for frame in request_iterator:
                kind = frame.WhichOneof("frame")
                if kind == "stdin":
                    proc.stdin.write(frame.stdin)
                    await proc.stdin.drain()
                elif kind == "stdin_eof":
                    break
            proc.stdin.close()

        tasks = [
            asyncio.create_task(pump(proc.stdout, to_stderr=False)),
            asyncio.create_task(pump(proc.stderr, to_stderr=True)),
        ]
        if start.stdin:
            tasks.append(asyncio.create_task(feed()))
        try:
            open_streams = 2
            while open_streams:
                item = await outputs.get()
                if item is None:
                    open_streams -= 1
                else:
                    yield item
            code = await proc.wait()
            yield podaccess_pb2.PodExecOutput(exit_code=code if code >= 0 else 128 - code)
        finally:
            if proc.returncode is None:
                # The caller went away: the command goes with it.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
