"""The node proxy's cost: throughput (MB/s) and connection latency of a proxied TCP connection against a
direct one, in one run.

Starts a backend process (a sink that reads until EOF, and a one-byte echo), and a proxy process running the
agent's ``nodeagent.proxy.Listener`` on a cluster IP (127.77.250.1) in front of them. The client streams
``--megabytes`` through each path, then opens ``--connections`` fresh connections one after another for a
one-byte request/response (connect + round trip). Prints both paths and the difference. Nothing is asserted:
record the figures in docs/performance.md.

    python bench/proxy.py [--megabytes 2048] [--connections 2000]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import time

from controlplane.launcher.etcd import free_port

# Plain blocking sockets, a thread per connection: the backend must not be what limits the measurement.
BACKEND = """
import socket, sys, threading
def serve(port, handle):
    s = socket.create_server(("127.0.0.1", port), backlog=512)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()
def sink(conn):
    buf = bytearray(1 << 20)
    while conn.recv_into(buf):
        pass
    conn.sendall(b"done"); conn.close()
def echo(conn):
    while data := conn.recv(1024):
        conn.sendall(data)
    conn.close()
threading.Thread(target=serve, args=(int(sys.argv[1]), sink), daemon=True).start()
threading.Thread(target=serve, args=(int(sys.argv[2]), echo), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

PROXY = """
import asyncio, sys
from nodeagent.proxy import Listener, Rule
async def main():
    ip, sink, echo, psink, pecho = sys.argv[1], *map(int, sys.argv[2:])
    for port, backend in ((psink, sink), (pecho, echo)):
        await Listener((ip, port), Rule("bench", [("127.0.0.1", backend)]), "round-robin").start()
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

CLUSTER_IP = "127.77.250.1"


def start(code: str, *args: object) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def throughput(host: str, port: int, megabytes: int) -> float:
    """MB/s of a one-way stream (until the far end has read everything)."""
    chunk = b"x" * (1 << 20)
    with socket.create_connection((host, port)) as s:
        began = time.perf_counter()
        for _ in range(megabytes):
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(16) == b"done"
        return megabytes * (1 << 20) / 1e6 / (time.perf_counter() - began)


def latencies(host: str, port: int, count: int) -> list[float]:
    """Seconds per fresh connection: connect, one byte there and back, close."""
    out = []
    for _ in range(count):
        began = time.perf_counter()
        with socket.create_connection((host, port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"x")
            assert s.recv(1) == b"x"
        out.append(time.perf_counter() - began)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=2048)
    parser.add_argument("--connections", type=int, default=2000)
    opts = parser.parse_args()
    sink, echo, psink, pecho = (free_port() for _ in range(4))
    backend = start(BACKEND, sink, echo)
    proxy = start(PROXY, CLUSTER_IP, sink, echo, psink, pecho)
    try:
        rows = {}
        for label, host, s_port, e_port in (
            ("direct", "127.0.0.1", sink, echo),
            ("proxied", CLUSTER_IP, psink, pecho),
        ):
            throughput(host, s_port, 64)  # warm-up
            rate = throughput(host, s_port, opts.megabytes)
            lat = latencies(host, e_port, opts.connections)
            rows[label] = (rate, pct(lat, 50), pct(lat, 99))
    finally:
        for process in (proxy, backend):
            process.kill()
            process.wait()
    print(f"# proxy: {opts.megabytes} MB streamed, {opts.connections} fresh connections (connect + 1-byte round trip)")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; one proxy process")
    print(f"{'path':<10}{'MB/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for label, (rate, p50, p99) in rows.items():
        print(f"{label:<10}{rate:>10.0f}{p50:>10.3f}{p99:>10.3f}")
    d, v = rows["direct"], rows["proxied"]
    print(f"added latency p50 / p99 (ms): {v[1] - d[1]:.3f} / {v[2] - d[2]:.3f}; throughput ratio {v[0] / d[0]:.2f}")


if __name__ == "__main__":
    main()
