"""Reading container logs: CRI-format files per container instance, rotated by size.

A container's instance N (N = its restart count when it started) writes ``<container dir>/N.log``; the shim
rotates it to ``N.log.1`` ... ``N.log.K`` (oldest last). Only the current and the previous instance are
kept, as ``kubectl logs --previous`` needs no more. Each record is ``<RFC3339Nano> <stream> <P|F> <text>``:
``F`` ends a line, ``P`` is a part of a longer (or unterminated) line.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

FOLLOW_POLL = 0.2
"""Seconds between looks at a followed file (new lines, rotation, container state)."""

_INSTANCE = re.compile(r"^(\d+)\.log(\.\d+)?$")


def instance_log(container_dir: Path, instance: int) -> Path:
    """The current log file of one instance of a container."""
    return container_dir / f"{instance}.log"


def instance_files(container_dir: Path, instance: int) -> list[Path]:
    """An instance's log files, oldest first (N.log.K ... N.log.1, N.log)."""
    base = instance_log(container_dir, instance)
    rotated = sorted(
        (p for p in container_dir.glob(f"{instance}.log.*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]),
        reverse=True,
    )
    return [*rotated, base] if base.exists() else rotated


def prune_instances(container_dir: Path, keep_from: int) -> None:
    """Delete the log files of instances older than ``keep_from``."""
    for path in container_dir.glob("*.log*"):
        m = _INSTANCE.match(path.name)
        if m and int(m.group(1)) < keep_from:
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class LogOptions:
    """What part of a log to show, and how."""

    tail: int | None = None
    timestamps: bool = False
    since: str = ""  # RFC 3339; records older than this are skipped

    def render(self, record: bytes) -> bytes | None:
        """One stored record as shown to the user (None: filtered out or malformed)."""
        parts = record.rstrip(b"\n").split(b" ", 3)
        if len(parts) < 3:
            return None
        stamp, _stream, tag = parts[0], parts[1], parts[2]
        text = parts[3] if len(parts) == 4 else b""
        # RFC 3339 stamps in UTC with a fixed width compare correctly as strings.
        if self.since and stamp.decode(errors="replace") < self.since:
            return None
        out = text + (b"\n" if tag == b"F" else b"")
        return stamp + b" " + out if self.timestamps else out


def _records(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        try:
            with open(path, "rb") as f:
                yield from f
        except FileNotFoundError:
            continue  # rotated away between listing and opening


CHUNK_BYTES = 1024 * 1024
"""The most one chunk of log output holds (a log of any size streams in chunks; one message is capped)."""


def iter_instance(container_dir: Path, instance: int, options: LogOptions) -> Iterator[bytes]:
    """The whole (or the tail of the) log of one instance, rendered, in chunks of at most ``CHUNK_BYTES``;
    without a tail nothing but the current chunk is held in memory."""
    rendered: Iterator[bytes] = (
        shown for r in _records(instance_files(container_dir, instance)) if (shown := options.render(r))
    )
    if options.tail is not None:
        rendered = iter(deque(rendered, maxlen=options.tail))
    yield from rechunk(rendered)


def read_instance(container_dir: Path, instance: int, options: LogOptions) -> bytes:
    """The whole (or the tail of the) log of one instance, rendered, as one value (for small logs)."""
    return b"".join(iter_instance(container_dir, instance, options))


def rechunk(pieces: Iterator[bytes] | list[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The same bytes in chunks of at most ``size`` (small pieces joined, large ones split)."""
    held: list[bytes] = []
    held_bytes = 0
    for piece in pieces:
        while piece:
            room = size - held_bytes
            held.append(piece[:room])
            held_bytes += len(held[-1])
            piece = piece[room:]
            if held_bytes >= size:
                yield b"".join(held)
                held, held_bytes = [], 0
    if held:
        yield b"".join(held)


def limited(chunks: Iterator[bytes], limit: int | None) -> Iterator[bytes]:
    """At most ``limit`` bytes of ``chunks`` (None: all); stops reading once the limit is reached."""
    if limit is None:
        yield from chunks
        return
    left = limit
    for chunk in chunks:
        if left <= 0:
            return
        yield chunk[:left]
        left -= len(chunk)


@dataclass(frozen=True)
class ContainerLogState:
    """What the log follower needs to know of a container, asked again at every poll."""

    instance: int  # the newest instance that started (or is about to)
    running: bool  # a process of that instance is running
    final: bool  # the container will not run again (finished for good, or its pod is going away)


async def follow(
    container_dir: Path,
    instance: int,
    options: LogOptions,
    state: Callable[[], ContainerLogState],
    chunk_bytes: int = 64 * 1024,
) -> AsyncIterator[bytes]:
    """The tail of ``instance``'s log, then every new line, across rotations and restarts.

    Ends when the container has stopped and will not be restarted.
    """
    current = instance
    # Open the live file first, so nothing written while the history is read can be missed.
    f: IO[bytes] | None = _open_from_start(instance_log(container_dir, current))
    history: deque[bytes] | list[bytes] = deque(maxlen=options.tail) if options.tail is not None else []
    live = os.fstat(f.fileno()).st_ino if f is not None else -1
    base = instance_log(container_dir, instance)
    older = [p for p in instance_files(container_dir, instance) if p != base and _inode(p) != live]
    for record in _records(older):
        shown = options.render(record)
        if shown is not None:
            history.append(shown)
    if f is not None:
        for record in iter(f.readline, b""):
            if not record.endswith(b"\n"):
                f.seek(f.tell() - len(record))  # a record still being written: read it whole later
                break
            shown = options.render(record)
            if shown is not None:
                history.append(shown)
    for chunk in rechunk(list(history), chunk_bytes):
        yield chunk
    try:
        while True:
            batch = _read_available(f, options, chunk_bytes) if f else b""
            if batch:
                yield batch
                continue
            path = instance_log(container_dir, current)
            if f is None or _rotated(f, path):
                # The shim rotated the file (or it had not been created yet): finish the old file, then every
                # file rotated since (a slow reader may have missed several rotations), then take the new one.
                held = -1
                if f is not None:
                    held = os.fstat(f.fileno()).st_ino
                    for chunk in _drain(f, options, chunk_bytes):
                        yield chunk
                    f.close()
                    f = None
                f = _open_from_start(path)
                if held != -1:
                    live_ino = os.fstat(f.fileno()).st_ino if f is not None else -1
                    for missed in _rotated_since(container_dir, current, held, live_ino):
                        rendered = (shown for r in _records([missed]) if (shown := options.render(r)) is not None)
                        for chunk in rechunk(rendered, chunk_bytes):
                            yield chunk
                if f is not None:
                    continue
            st = state()
            if st.instance > current:
                if f is not None:
                    for chunk in _drain(f, options, chunk_bytes):
                        yield chunk
                    f.close()
                    f = None
                current = st.instance
                continue
            if not st.running and st.final:
                if f is not None:
                    for chunk in _drain(f, options, chunk_bytes):
                        yield chunk
                return
            await asyncio.sleep(FOLLOW_POLL)
    finally:
        if f is not None:
            f.close()


def _rotated_since(container_dir: Path, instance: int, held: int, live: int) -> list[Path]:
    """Rotated files newer than the one with inode ``held`` and older than the live one, oldest first (if
    ``held`` was already dropped, every rotated file left is newer than it)."""
    files = [p for p in instance_files(container_dir, instance) if p.suffix != ".log"]
    inodes = [_inode(p) for p in files]
    newer = files[inodes.index(held) + 1 :] if held in inodes else files
    return [p for p in newer if _inode(p) not in (live, -2)]


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return -2


def _open_from_start(path: Path) -> IO[bytes] | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _rotated(f: IO[bytes], path: Path) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return True


def _drain(f: IO[bytes], options: LogOptions, chunk_bytes: int) -> Iterator[bytes]:
    """Every whole record left in ``f``, in chunks of about ``chunk_bytes``."""
    while batch := _read_available(f, options, chunk_bytes):
        yield batch


def _read_available(f: IO[bytes], options: LogOptions, limit: int) -> bytes:
    """Whole records written since the last read (a record still being written is left for later)."""
    out: list[bytes] = []
    size = 0
    while size < limit:
        pos = f.tell()
        record = f.readline()
        if not record:
            break
        if not record.endswith(b"\n"):
            f.seek(pos)
            break
        shown = options.render(record)
        if shown is not None:
            out.append(shown)
            size += len(shown)
    return b"".join(out)
