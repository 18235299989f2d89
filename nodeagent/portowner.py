"""Whose is a listening TCP port: the sockets in /proc/net/tcp{,6} matched to a pod's processes' descriptors.

Pods share their node's network, so "a port of the pod" cannot mean "a port in the pod's network
namespace". Port-forwarding therefore reaches a port only when one of the pod's own processes (its shims
and every descendant) holds the listening socket; a port another pod or the host listens on is refused.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

LISTEN = "0A"


def listening(port: int, proc: Path = Path("/proc")) -> dict[int, str]:
    """Inode -> local address of every TCP socket listening on ``port``."""
    out: dict[int, str] = {}
    for table, width in (("tcp", 4), ("tcp6", 16)):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            host_hex, _, port_hex = fields[1].partition(":")
            if int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(host_hex)
            # The kernel prints each 32-bit word in host (little-endian) order.
            host = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            out[int(fields[9])] = str(ipaddress.ip_address(host if width == 16 else host[:4]))
    return out


def descendants(roots: list[int], proc: Path = Path("/proc")) -> set[int]:
    """The processes ``roots`` and all their descendants (by parent pid, one pass over /proc)."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [r for r in roots if r > 0]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def socket_inodes(pid: int, proc: Path = Path("/proc")) -> set[int]:
    """The socket inodes a process holds."""
    out: set[int] = set()
    fd_dir = proc / str(pid) / "fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return out
    for name in names:
        try:
            target = os.readlink(fd_dir / name)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def owned_listener(roots: list[int], port: int) -> str | None:
    """The address to connect to for ``port`` when a process of the tree ``roots`` listens on it, else None.
    A wildcard listener is reached on loopback."""
    sockets = listening(port)
    if not sockets:
        return None
    for pid in descendants(roots):
        for inode in socket_inodes(pid) & sockets.keys():
            host = sockets[inode]
            return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return None
