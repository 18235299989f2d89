"""The node's artifact cache and placement, against a real HTTP server in a thread (no cluster).

Plausible bugs each test catches: the content used without its hash checked, or the mismatch message
without both hashes; a second download of a cached hash, or two downloads for two pods starting at once; an
archive member written outside its target (``..``, an absolute path, a link leaving it); a cache that grows
without bound or evicts what was just fetched; a 503 not retried, a 404 retried; a stalled server hanging the
fetch; a placed file the workload can write through to the cache; a planted link followed when placing.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.api.pb import core_pb2
from nodeagent.artifacts import ArtifactCache, ArtifactError, Fetched
from nodeagent.pod.hooks.artifacts import place
from tests.helpers import ServedFiles, serve_files


@pytest.fixture
def server() -> Iterator[tuple[str, ServedFiles]]:
    with serve_files() as served:
        yield served.base, served


def artifact(url: str, data: bytes, **fields: object) -> core_pb2.Artifact:
    return core_pb2.Artifact(url=url, sha256=hashlib.sha256(data).hexdigest(), **fields)  # type: ignore[arg-type]


def tarball(members: dict[str, bytes], *, links: dict[str, str] | None = None, mode: int = 0o755) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def cache(tmp_path: Path, **kw: object) -> ArtifactCache:
    return ArtifactCache(tmp_path / "artifacts", retries=(0.05, 0.05, 0.05), **kw)  # type: ignore[arg-type]


def nothing(_: str) -> None:
    pass


async def test_a_file_is_fetched_once_verified_and_placed_as_a_read_only_link(
    server: tuple[str, ServedFiles], tmp_path: Path
) -> None:
    base, files = server
    files.content["/tool"] = b"#!/bin/sh\necho hi\n"
    c = cache(tmp_path)
    a = artifact(f"{base}/tool", files.content["/tool"])
    first, _ = await asyncio.gather(c.get(a, nothing), c.get(a, nothing))  # two pods at once
    assert files.hits["/tool"] == 1 and c.downloads == 1
    third = await c.get(a, nothing)
    assert third.cached and files.hits["/tool"] == 1
    work = tmp_path / "work"
    work.mkdir()
    place(first, a, work, (os.geteuid(), os.getegid()))
    placed = work / "tool"
    st = placed.stat()
    assert stat.S_IMODE(st.st_mode) == 0o555 and st.st_nlink >= 2  # executable, and a link, not a copy
    assert placed.read_bytes() == files.content["/tool"]
    assert st.st_ino == first.path.stat().st_ino


async def test_a_wrong_hash_is_refused_naming_both_hashes_and_nothing_is_kept(
    server: tuple[str, ServedFiles], tmp_path: Path
) -> None:
    base, files = server
    files.content["/x"] = b"the real content"
    c = cache(tmp_path)
    wrong = core_pb2.Artifact(url=f"{base}/x", sha256="0" * 64)
    with pytest.raises(ArtifactError) as err:
        await c.get(wrong, nothing)
    real = hashlib.sha256(files.content["/x"]).hexdigest()
    assert f"expected {'0' * 64}, got {real}" in str(err.value)
    assert not any((tmp_path / "artifacts" / "blobs").iterdir())
    assert not any((tmp_path / "artifacts" / "tmp").iterdir())


async def test_a_tarball_is_unpacked_and_its_files_linked_into_a_directory(
    server: tuple[str, ServedFiles], tmp_path: Path
) -> None:
    base, files = server
    files.content["/app.tar.gz"] = tarball(
        {"app/run.sh": b"#!/bin/sh\n", "app/data.txt": b"d"}, links={"app/r": "run.sh"}
    )
    c = cache(tmp_path)
    a = artifact(f"{base}/app.tar.gz", files.content["/app.tar.gz"], path="opt")
    fetched = await c.get(a, nothing)
    work = tmp_path / "work"
    work.mkdir()
    place(fetched, a, work, (os.geteuid(), os.getegid()))
    assert (work / "opt/app/run.sh").read_bytes() == b"#!/bin/sh\n"
    assert os.readlink(work / "opt/app/r") == "run.sh"
    assert os.access(work / "opt/app/run.sh", os.X_OK)
    assert not (work / "opt/app/run.sh").stat().st_mode & 0o222  # shared with the cache: read-only


@pytest.mark.parametrize("spacing", [0.0, 0.001, 0.01, 0.05])
async def test_replicas_asking_at_once_share_one_download_and_one_unpack(
    server: tuple[str, ServedFiles], tmp_path: Path, spacing: float
) -> None:
    """Two replicas on one node start together: one download (reported as not cached, exactly once), one
    unpack, and both get the tree. The unpack used to run twice and the slower rename failed its container
    ("cannot unpack: Directory not empty"); it restarted from the cache, so no FetchedArtifact Event at all
    (seen in CI as a missing Event). ``spacing`` puts the second request at different points of the first."""
    base, files = server
    files.content["/app.tgz"] = tarball({f"app/f{i}": b"x" * 2000 for i in range(60)})
    c = cache(tmp_path)
    a = artifact(f"{base}/app.tgz", files.content["/app.tgz"])

    async def later(delay: float) -> Fetched:
        await asyncio.sleep(delay)
        return await c.get(a, nothing)

    results = await asyncio.gather(*(later(i * spacing) for i in range(3)))
    assert [r.cached for r in results].count(False) == 1, [r.cached for r in results]
    assert files.hits["/app.tgz"] == 1
    assert all(r.path == results[0].path for r in results)
    assert len(list((results[0].path / "app").iterdir())) == 60


@pytest.mark.parametrize(
    "members,links,why",
    [
        ({"../escape": b"x"}, None, "outside"),
        ({"/etc/evil": b"x"}, None, "absolute"),
        ({"ok": b"x"}, {"link": "../../etc/passwd"}, "outside"),
        ({"ok": b"x"}, {"link": "/etc/passwd"}, "absolute"),
    ],
    ids=["dotdot", "absolute", "link-out", "absolute-link"],
)
async def test_archive_members_that_leave_the_target_are_refused(
    server: tuple[str, ServedFiles], tmp_path: Path, members: dict[str, bytes], links: dict[str, str] | None, why: str
) -> None:
    base, files = server
    files.content["/bad.tgz"] = tarball(members, links=links)
    c = cache(tmp_path)
    with pytest.raises(ArtifactError, match=f"refused member .*{why}"):
        await c.get(artifact(f"{base}/bad.tgz", files.content["/bad.tgz"]), nothing)
    assert not (tmp_path / "escape").exists() and not any((tmp_path / "artifacts" / "trees").iterdir())


async def test_a_zip_with_a_dotdot_member_is_refused(server: tuple[str, ServedFiles], tmp_path: Path) -> None:
    base, files = server
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../x", b"x")
    files.content["/bad.zip"] = buf.getvalue()
    with pytest.raises(ArtifactError, match="outside the target"):
        await cache(tmp_path).get(artifact(f"{base}/bad.zip", files.content["/bad.zip"]), nothing)


async def test_the_cache_evicts_the_least_recently_used_beyond_its_size(
    server: tuple[str, ServedFiles], tmp_path: Path
) -> None:
    base, files = server
    for name in ("a", "b", "c"):
        files.content[f"/{name}"] = name.encode() * 400
    c = cache(tmp_path, max_bytes=1700)  # each: a 400-byte blob and a 400-byte copy with mode 0444
    arts = {n: artifact(f"{base}/{n}", files.content[f"/{n}"], mode=0o444) for n in ("a", "b", "c")}
    await c.get(arts["a"], nothing)
    await c.get(arts["b"], nothing)
    await c.get(arts["a"], nothing)  # a is used again: b is now the least recently used
    await c.get(arts["c"], nothing)
    blobs = {p.name for p in (tmp_path / "artifacts" / "blobs").iterdir()}
    assert arts["b"].sha256 not in blobs and {arts["a"].sha256, arts["c"].sha256} <= blobs
    await c.get(arts["b"], nothing)
    assert files.hits["/b"] == 2  # gone from the cache, so fetched again


async def test_a_503_is_retried_a_404_is_not_and_a_stalled_server_times_out(
    server: tuple[str, ServedFiles], tmp_path: Path
) -> None:
    base, files = server
    files.content["/flaky"] = b"ok"
    files.fail["/flaky"] = [503, 503]
    c = cache(tmp_path, timeout=2.0)
    assert (await c.get(artifact(f"{base}/flaky", b"ok"), nothing)).path.exists()
    assert files.hits["/flaky"] == 3
    with pytest.raises(ArtifactError, match="HTTP 404"):
        await c.get(artifact(f"{base}/missing", b"?"), nothing)
    assert files.hits["/missing"] == 1
    files.stall.add("/slow")
    began = time.monotonic()
    with pytest.raises(ArtifactError, match="not fetched within 2s"):
        await c.get(artifact(f"{base}/slow", b"?"), nothing)
    assert time.monotonic() - began < 4


async def test_file_urls_need_the_agent_to_allow_them(tmp_path: Path) -> None:
    secret = tmp_path / "host-file"
    secret.write_bytes(b"node data")
    a = artifact(f"file://{secret}", b"node data")
    with pytest.raises(ArtifactError, match="file URLs are not enabled"):
        await cache(tmp_path).get(a, nothing)
    assert (await cache(tmp_path / "other", file_urls=True).get(a, nothing)).path.read_bytes() == b"node data"


async def test_placing_replaces_a_planted_link_instead_of_following_it(
    server: tuple[str, ServedFiles], tmp_path: Path
) -> None:
    base, files = server
    files.content["/tool"] = b"tool"
    c = cache(tmp_path)
    a = artifact(f"{base}/tool", b"tool", path="bin/tool", mode=0o644)  # write bits: a copy for the pod's user
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "bin").symlink_to(outside)  # the workload swapped the directory for a link
    place(await c.get(a, nothing), a, work, (os.geteuid(), os.getegid()))
    assert not any(outside.iterdir()), "nothing was written through the link"
    placed = work / "bin" / "tool"
    assert not (work / "bin").is_symlink() and placed.read_bytes() == b"tool"
    assert stat.S_IMODE(placed.stat().st_mode) == 0o644 and placed.stat().st_nlink == 1  # a copy of its own
