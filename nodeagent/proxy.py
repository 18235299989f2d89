"""The node proxy (Navarch's kube-proxy): every agent serves every Service port on the Service's cluster IP,
and NodePort Services also on the node's IP, forwarding each TCP connection to a ready endpoint.

::

    Services + Endpoints informers ──change──> sync(): wanted listeners {(ip, port): ready backends}
        new with backends ──> listen (SO_REUSEPORT: agents on one machine share the address)
        backends changed ──> new connections use the new set at once; established ones are left alone
        no ready backend ──> stop listening, so a client is refused at once instead of hanging
    connection ──> pick a backend (round robin or least connections; ClientIP affinity if asked)
               ──> connect (next backend if that fails) ──> copy bytes both ways until either side closes

Cluster IPs come from 127.0.0.0/8 (the API server's default range 127.77.0.0/16), which every Linux host
routes to loopback, so no network set-up is needed to listen on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from controlplane.client.informer import Informer

log = logging.getLogger(__name__)

ROUND_ROBIN, LEAST_CONNECTIONS = "round-robin", "least-connections"
_CHUNK = 256 * 1024
Backend = tuple[str, int]


@dataclass
class Rule:
    """What one listener forwards to."""

    service: str
    """``namespace/name:port-name``, for logs."""
    backends: list[Backend]
    affinity_seconds: float = 0.0
    """ClientIP session affinity timeout (0: none)."""


@dataclass
class Listener:
    """One (address, port) this agent listens on for a Service port."""

    address: Backend
    rule: Rule
    policy: str
    server: asyncio.AbstractServer | None = None
    active: dict[Backend, int] = field(default_factory=dict)
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _affinity: dict[str, tuple[Backend, float]] = field(default_factory=dict)
    _connections: set[asyncio.Task[None]] = field(default_factory=set)
    """In-flight connection handlers: held here so that none is garbage-collected mid-copy."""

    async def start(self) -> None:
        """Listen (sharing the address with other agents on this machine)."""
        host, port = self.address
        self.server = await asyncio.start_server(self._serve, host, port, reuse_port=True, backlog=1024)

    def stop(self) -> None:
        """Stop accepting; established connections continue until their ends close."""
        if self.server is not None:
            self.server.close()
            self.server = None

    def _order(self, client_ip: str) -> list[Backend]:
        """Backends to try, best first."""
        backends = list(self.rule.backends)
        if not backends:
            return []
        if self.rule.affinity_seconds:
            sticky = self._affinity.get(client_ip)
            if (
                sticky is not None
                and sticky[0] in backends
                and time.monotonic() - sticky[1] < self.rule.affinity_seconds
            ):
                return [sticky[0], *(b for b in backends if b != sticky[0])]
        if self.policy == LEAST_CONNECTIONS:
            start = next(self._turn) % len(backends)  # ties go round robin
            rotated = backends[start:] + backends[:start]
            return sorted(rotated, key=lambda b: self.active.get(b, 0))
        start = next(self._turn) % len(backends)
        return backends[start:] + backends[:start]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        peer = writer.get_extra_info("peername")
        client_ip = peer[0] if peer else ""
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        chosen: Backend | None = None
        for backend in self._order(client_ip):
            try:
                async with asyncio.timeout(3.0):
                    upstream = await asyncio.open_connection(*backend)
                chosen = backend
                break
            except (OSError, TimeoutError) as err:
                log.info("%s: backend %s:%d failed (%s); trying the next", self.rule.service, *backend, err)
        if upstream is None or chosen is None:
            _reset(writer)
            return
        if self.rule.affinity_seconds:
            self._affinity[client_ip] = (chosen, time.monotonic())
        self.active[chosen] = self.active.get(chosen, 0) + 1
        up_reader, up_writer = upstream
        _no_delay(writer)
        _no_delay(up_writer)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self.active[chosen] -= 1
            for w in (writer, up_writer):
                w.close()


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Refuse an accepted connection at once (RST), rather than leave the client waiting."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side (so request/response protocols finish cleanly)."""
    try:
        while True:
            data = await src.read(_CHUNK)
            if not data:
                break
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError):
        dst.transport.abort()


def wanted_rules(
    services: list[core_pb2.Service], endpoints: Callable[[str], core_pb2.Endpoints | None], node_ip: str
) -> dict[Backend, Rule]:
    """Every (address, port) to listen on, with its ready backends (TCP ports of Services with a cluster IP)."""
    out: dict[Backend, Rule] = {}
    for svc in services:
        ip = svc.spec.cluster_ip
        if not ip or ip == "None":
            continue
        key = f"{svc.metadata.namespace}/{svc.metadata.name}"
        ep = endpoints(key)
        affinity = 0.0
        if svc.spec.session_affinity == "ClientIP":
            cfg = svc.spec.session_affinity_config.client_ip
            affinity = float(cfg.timeout_seconds) if cfg.HasField("timeout_seconds") else 10800.0
        for port in svc.spec.ports:
            if (port.protocol or "TCP") != "TCP":
                continue
            backends: list[Backend] = []
            for subset in ep.subsets if ep is not None else []:
                match = [p for p in subset.ports if p.name == port.name] or (
                    list(subset.ports) if len(svc.spec.ports) == 1 else []
                )
                for p in match[:1]:
                    backends += [(a.ip, p.port) for a in subset.addresses]
            rule = Rule(f"{key}:{port.name or port.port}", sorted(set(backends)), affinity)
            out[(ip, port.port)] = rule
            if svc.spec.type == "NodePort" and port.node_port:
                out[(node_ip, port.node_port)] = rule
    return out


class ServiceProxy:
    """Keeps this agent's listeners equal to the cluster's Services and their ready endpoints."""

    def __init__(self, client: ApiClient, node_ip: str, policy: str = ROUND_ROBIN) -> None:
        if policy not in (ROUND_ROBIN, LEAST_CONNECTIONS):
            raise ValueError(f"proxy balancing must be {ROUND_ROBIN} or {LEAST_CONNECTIONS}, not {policy!r}")
        self.node_ip = node_ip
        self.policy = policy
        self.services: Informer[core_pb2.Service] = Informer(client, core_pb2.Service)
        self.endpoints: Informer[core_pb2.Endpoints] = Informer(client, core_pb2.Endpoints)
        self.listeners: dict[Backend, Listener] = {}
        self._changed = asyncio.Event()
        for inf in (self.services, self.endpoints):
            inf.add_event_handler(self._touch, lambda _o, _n: self._changed.set(), self._touch)

    def _touch(self, _obj: object) -> None:
        self._changed.set()

    async def run(self) -> None:
        """Follow Services and Endpoints until cancelled; then stop listening."""
        tasks = [asyncio.create_task(i.run(), name=f"proxy-{i.info.plural}") for i in (self.services, self.endpoints)]
        try:
            await self.services.wait_for_sync(120)
            await self.endpoints.wait_for_sync(120)
            while True:
                self._changed.clear()
                await self.sync()
                await self._changed.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for listener in self.listeners.values():
                listener.stop()
            self.listeners.clear()

    async def sync(self) -> None:
        """Open, update and close listeners to match the caches."""
        wanted = wanted_rules(self.services.store.objects(), self.endpoints.store.get, self.node_ip)
        for address in [a for a in self.listeners if a not in wanted or not wanted[a].backends]:
            self.listeners.pop(address).stop()
        for address, rule in wanted.items():
            if not rule.backends:
                continue  # not listening: connections are refused at once
            listener = self.listeners.get(address)
            if listener is not None:
                listener.rule = rule
                continue
            listener = Listener(address, rule, self.policy)
            try:
                await listener.start()
            except OSError as err:
                log.warning("%s: cannot listen on %s:%d: %s", rule.service, *address, err)
                continue
            self.listeners[address] = listener
