"""Reading CRI-format container logs: rendering, tail across rotated files, following rotation and restarts."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from nodeagent.logs import ContainerLogState, LogOptions, follow, instance_files, prune_instances, read_instance
from nodeagent.shim import RotatingLog
from tests.helpers import eventually


def test_records_render_lines_partials_timestamps_and_since() -> None:
    full = b"2026-01-01T00:00:01.000000000Z stdout F hello world\n"
    part = b"2026-01-01T00:00:02.000000000Z stderr P no newline\n"
    assert LogOptions().render(full) == b"hello world\n"
    assert LogOptions().render(part) == b"no newline"
    assert LogOptions(timestamps=True).render(full) == b"2026-01-01T00:00:01.000000000Z hello world\n"
    assert LogOptions(since="2026-01-01T00:00:01.5Z").render(full) is None
    assert LogOptions(since="2026-01-01T00:00:01.5Z").render(part) == b"no newline"
    assert LogOptions().render(b"garbage\n") is None


def _write(log: RotatingLog, lines: range) -> None:
    for i in lines:
        log.write("stdout", f"line {i:04d}\n".encode())


def test_tail_spans_rotated_files_in_order(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "0.log", max_bytes=300, keep=5)
    _write(log, range(40))
    log.close()
    assert len(instance_files(tmp_path, 0)) > 2  # rotated several times
    everything = read_instance(tmp_path, 0, LogOptions()).decode().splitlines()
    assert everything == [f"line {i:04d}" for i in range(40 - len(everything), 40)]
    assert read_instance(tmp_path, 0, LogOptions(tail=3)).decode().splitlines() == [
        "line 0037",
        "line 0038",
        "line 0039",
    ]


def test_prune_keeps_the_current_and_previous_instances(tmp_path: Path) -> None:
    for name in ("0.log", "0.log.1", "1.log", "2.log", "2.log.1", "shim.log"):
        (tmp_path / name).write_text("x")
    prune_instances(tmp_path, keep_from=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.log", "2.log", "2.log.1", "shim.log"]


async def test_follow_reads_through_rotation_and_restarts_and_ends_when_final(tmp_path: Path) -> None:
    state = ContainerLogState(instance=0, running=True, final=False)
    first = RotatingLog(tmp_path / "0.log", max_bytes=200, keep=1)
    _write(first, range(5))
    received: list[str] = []

    async def consume() -> None:
        async for chunk in follow(tmp_path, 0, LogOptions(), lambda: state):
            received.extend(chunk.decode().splitlines())

    reader = asyncio.create_task(consume())

    async def seen(n: int) -> None:
        await eventually(lambda: len(received) >= n)

    await seen(5)
    # About one rotation per batch (4 records fit a file). A follower keeps up with rotation as long as the
    # shim does not rotate more than --log-keep times between two of its looks, as with Kubernetes.
    for start in range(5, 30, 3):
        end = min(start + 3, 30)
        _write(first, range(start, end))
        await seen(end)
    first.close()
    # The container restarts: instance 1 writes a new file, and the follower moves on to it.
    state = ContainerLogState(instance=1, running=True, final=False)
    second = RotatingLog(tmp_path / "1.log", max_bytes=10_000, keep=1)
    _write(second, range(30, 35))
    second.close()
    await seen(35)
    assert not reader.done()
    state = ContainerLogState(instance=1, running=False, final=True)
    async with asyncio.timeout(10):
        await reader
    # Rotation keeps one old file, so early lines are gone from disk, but the follower saw every one.
    assert received == [f"line {i:04d}" for i in range(35)]
    assert "line 0000" not in read_instance(tmp_path, 0, LogOptions()).decode()


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


async def test_follow_waits_for_a_record_being_written(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(b"2026-01-01T00:00:01Z stdout F one\n2026-01-01T00:00:02Z stdout F tw")
    state = ContainerLogState(instance=0, running=True, final=False)
    chunks: list[bytes] = []

    async def consume() -> None:
        async for chunk in follow(tmp_path, 0, LogOptions(), lambda: state):
            chunks.append(chunk)

    reader = asyncio.create_task(consume())
    await eventually(lambda: bool(chunks))
    assert b"".join(chunks) == b"one\n"
    _append(path, b"o\n")
    await eventually(lambda: b"".join(chunks) == b"one\ntwo\n")
    state = ContainerLogState(instance=0, running=False, final=True)
    async with asyncio.timeout(10):
        await reader


async def test_a_stalled_follower_reads_every_file_rotated_while_it_was_away(tmp_path: Path) -> None:
    """A follower that misses several rotations (a slow client, a busy agent) still reads the files the shim
    kept, in order (plausible bug, seen in a loaded e2e run: after the file it held it jumped straight to the
    live file and skipped the rotated ones in between)."""
    state = ContainerLogState(instance=0, running=True, final=False)
    log = RotatingLog(tmp_path / "0.log", max_bytes=200, keep=4)
    _write(log, range(3))
    stream = follow(tmp_path, 0, LogOptions(), lambda: state)
    received = (await anext(stream)).decode().splitlines()
    assert received == [f"line {i:04d}" for i in range(3)]
    _write(log, range(3, 15))  # three rotations while nobody reads
    log.close()
    assert len(instance_files(tmp_path, 0)) >= 4, "the test needs several rotated files"
    async with asyncio.timeout(10):
        while len(received) < 15:
            received.extend((await anext(stream)).decode().splitlines())
    await stream.aclose()
    assert received == [f"line {i:04d}" for i in range(15)]


def test_an_endless_line_is_split_into_bounded_partial_records(tmp_path: Path) -> None:
    """A workload that writes one enormous line without a newline costs the shim at most MAX_RECORD bytes at a
    time: the line is logged as partial records (plausible bug, the issue's finding: the shim read whole
    lines, so one pod could make it hold gigabytes)."""
    import io

    from nodeagent.shim import MAX_RECORD, pump

    log = RotatingLog(tmp_path / "0.log", max_bytes=10 * 2**20, keep=1)
    line = b"x" * (5 * MAX_RECORD + 7) + b"\n"
    pump(io.BytesIO(line + b"short\n"), "stdout", log)
    log.close()
    records = (tmp_path / "0.log").read_bytes().splitlines()
    assert len(records) == 7
    tags = [r.split(b" ")[2] for r in records]
    assert tags == [b"P"] * 5 + [b"F", b"F"]
    assert all(len(r.split(b" ", 3)[3]) <= MAX_RECORD for r in records)
    assert b"".join(r.split(b" ", 3)[3] for r in records[:6]) == line.rstrip(b"\n")
    assert read_instance(tmp_path, 0, LogOptions()).decode().splitlines() == ["x" * (5 * MAX_RECORD + 7), "short"]


def test_log_files_belong_to_the_pods_user_mode_0640(tmp_path: Path) -> None:
    """Container logs are the pod's user's, 0640, also after rotation (they sit in a 0700 directory of the
    agent's; plausible bug: world-readable 0644 logs owned by root)."""
    owner = (4321, 4322) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    log = RotatingLog(tmp_path / "0.log", max_bytes=200, keep=2, owner=owner)
    _write(log, range(10))  # rotates
    log.close()
    files = instance_files(tmp_path, 0)
    assert len(files) >= 2
    for f in files:
        st = f.stat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, *owner), f.name
