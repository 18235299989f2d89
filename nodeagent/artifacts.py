"""The node's artifact cache: files fetched by URL, verified by SHA-256, kept by content, unpacked once.

Layout under ``<data-dir>/artifacts`` (root's, 0700; workloads never see it, they get hard links):

    blobs/<sha256>            the downloaded bytes, 0555
    files/<sha256>-<mode>     the file as placed: the blob itself (hard link) for mode 0555, else a copy
                              made once per mode, read-only
    trees/<sha256>/           an archive unpacked (files read-only; no setuid, no devices, no escaping links)
    tmp/                      downloads in progress (removed on start)

Guarantees:

- One download per hash per node: concurrent requests for the same hash share one fetch; a cached hash is
  never fetched again (its last use is recorded, for eviction).
- Content is checked before anything uses it: a mismatch is an ``ArtifactError`` naming both hashes, and
  the bytes are thrown away.
- Bounded: a download larger than the cache is stopped; an archive whose members add up to more than the
  cache, or that has more than ``MAX_MEMBERS`` members, is refused; a fetch that does not finish within
  ``timeout`` fails. Network errors are retried with back-off (1 s, 2 s, 4 s) before failing.
- Archives are unpacked with ``..``, absolute paths, links leaving the target, devices and setuid bits
  refused (tar: Python's ``data`` filter; zip: the same rules checked here).
- The cache stays within ``max_bytes``: after each new entry the least recently used other entries are
  removed. A removed entry never breaks a pod: pods hold hard links (or copies), not paths into the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import ssl
import stat
import tarfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from controlplane.api.artifactnames import artifact_file_name, artifact_is_archive
from controlplane.api.pb import core_pb2

log = logging.getLogger(__name__)

MAX_MEMBERS = 10_000
"""Members an archive may have."""
RETRIES = (1.0, 2.0, 4.0)
"""Back-off between attempts after a network error."""
CHUNK = 1 << 20
BLOB_MODE = 0o555
"""Mode of a downloaded file, and the default mode of a placed one (programs run without a chmod)."""


class ArtifactError(Exception):
    """An artifact could not be fetched, verified or unpacked; the message says which and why."""


@dataclass(frozen=True)
class Fetched:
    """A verified artifact in the cache: a file, or a directory tree (an unpacked archive)."""

    path: Path
    size: int
    cached: bool
    """Already in the cache (no download)."""
    seconds: float


wants_extract = artifact_is_archive


class ArtifactCache:
    """Fetches, verifies, unpacks and keeps artifacts for every pod of the node; see the module's guarantees."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int = 2 << 30,
        timeout: float = 300.0,
        ca_file: str | None = None,
        file_urls: bool = False,
        retries: tuple[float, ...] = RETRIES,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.file_urls = file_urls
        self.retries = retries
        self._ssl = ssl.create_default_context(cafile=ca_file)
        self._inflight: dict[str, asyncio.Future[Path]] = {}
        self.downloads = 0
        """Downloads started (a cached or shared fetch is not one)."""
        for sub in ("blobs", "files", "trees", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        for leftover in (root / "tmp").iterdir():
            _remove(leftover)

    # ------------------------------------------------------------ public

    async def get(self, artifact: core_pb2.Artifact, progress: Callable[[str], None]) -> Fetched:
        """The artifact ready to place: ``files/<hash>-<mode>`` for a file, ``trees/<hash>`` for an archive.
        ``progress`` is told when a download starts."""
        began = time.monotonic()
        digest = artifact.sha256
        extract = wants_extract(artifact)
        target = (
            self.root / ("trees" if extract else "files") / (digest if extract else f"{digest}-{_mode(artifact):o}")
        )
        blob = self.root / "blobs" / digest
        if target.exists():
            _touch(target)
            _touch(blob)  # used together: evicted together
            return Fetched(target, _size(target), True, time.monotonic() - began)
        cached = True
        if not blob.exists():
            # Of several containers wanting the same blob at once, one downloads (and reports it); the others
            # wait for that download and count as served from the cache.
            _, downloaded_here = await self._shared(digest, lambda: self._download(artifact, progress))
            cached = not downloaded_here
        _touch(blob)
        if not target.exists():
            # Likewise one unpacks (or links) the target; two at once used to race, and the loser's rename onto
            # the finished directory failed its container ("cannot unpack: Directory not empty").
            if extract:
                await self._shared(f"{target}", lambda: self._in_thread(target, self._unpack, artifact, blob, target))
            else:
                await self._shared(
                    f"{target}", lambda: self._in_thread(target, self._variant, blob, target, _mode(artifact))
                )
        _touch(target)
        self._evict(keep={blob, target})
        return Fetched(target, _size(target), cached, time.monotonic() - began)

    # ------------------------------------------------------------ fetching

    @staticmethod
    async def _in_thread(result: Path, fn: Callable[..., None], *args: object) -> Path:
        await asyncio.to_thread(fn, *args)
        return result

    async def _shared(self, key: str, fetch: Callable[[], Awaitable[Path]]) -> tuple[Path, bool]:
        """Run ``fetch`` once for every caller that asks with the same ``key`` while it runs: (its result,
        whether this caller is the one that ran it)."""
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running), False
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            path = await fetch()
            future.set_result(path)
            return path, True
        except BaseException as err:
            future.set_exception(err if isinstance(err, Exception) else ArtifactError("fetch cancelled"))
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._inflight[key]

    async def _download(self, artifact: core_pb2.Artifact, progress: Callable[[str], None]) -> Path:
        url = artifact.url
        scheme = url.split("://", 1)[0].lower()
        if scheme == "file" and not self.file_urls:
            raise ArtifactError(f"{url}: file URLs are not enabled on this node (--artifact-file-urls)")
        progress(f"Fetching artifact {url}")
        self.downloads += 1
        deadline = time.monotonic() + self.timeout
        for attempt, pause in enumerate((*self.retries, None)):
            try:
                return await asyncio.wait_for(
                    asyncio.to_thread(self._fetch_once, artifact, deadline), max(0.1, deadline - time.monotonic())
                )
            except TimeoutError:
                raise ArtifactError(f"{url}: not fetched within {self.timeout:g}s") from None
            except _Retryable as err:
                if pause is None:
                    raise ArtifactError(f"{url}: {err} (after {attempt + 1} attempts)") from None
                if time.monotonic() + pause > deadline:
                    raise ArtifactError(
                        f"{url}: not fetched within {self.timeout:g}s ({err}; {attempt + 1} attempts)"
                    ) from None
                log.info("artifact %s: %s; again in %gs", url, err, pause)
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    def _fetch_once(self, artifact: core_pb2.Artifact, deadline: float) -> Path:
        """Stream one download into tmp/, hashing; rename into blobs/ when the hash matches."""
        url, expected = artifact.url, artifact.sha256
        tmp = self.root / "tmp" / f"{expected}.{uuid.uuid4().hex}"
        digest = hashlib.sha256()
        size = 0
        try:
            with self._open(url, deadline) as resp, open(tmp, "xb") as out:
                while chunk := resp.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ArtifactError(f"{url}: larger than the node's artifact cache ({self.max_bytes} bytes)")
                    if time.monotonic() > deadline:
                        raise ArtifactError(f"{url}: not fetched within {self.timeout:g}s")
                    digest.update(chunk)
                    out.write(chunk)
            got = digest.hexdigest()
            if got != expected:
                raise ArtifactError(f"{url}: sha256 mismatch: expected {expected}, got {got} ({size} bytes)")
            blob = self.root / "blobs" / expected
            os.chmod(tmp, BLOB_MODE)
            os.replace(tmp, blob)
            return blob
        except (OSError, urllib.error.URLError) as err:
            if isinstance(err, urllib.error.HTTPError) and 400 <= err.code < 500 and err.code not in (408, 429):
                raise ArtifactError(f"{url}: HTTP {err.code} {err.reason}") from None
            raise _Retryable(_describe(err)) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _open(self, url: str, deadline: float) -> BinaryIO:
        if url.lower().startswith("file://"):
            return open(url[len("file://") :], "rb")
        request = urllib.request.Request(url, headers={"User-Agent": "navarch-agent"})
        timeout = max(1.0, min(30.0, deadline - time.monotonic()))
        return cast(BinaryIO, urllib.request.urlopen(request, timeout=timeout, context=self._ssl))

    # ------------------------------------------------------------ preparing

    @staticmethod
    def _variant(blob: Path, target: Path, mode: int) -> None:
        """The file as placed with ``mode`` (read-only: it is shared by hard links); the blob itself for the
        default mode, a copy made once for any other."""
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        try:
            if mode & ~0o222 == BLOB_MODE:
                os.link(blob, tmp)
            else:
                shutil.copyfile(blob, tmp)
                os.chmod(tmp, mode & ~0o222)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _unpack(self, artifact: core_pb2.Artifact, blob: Path, target: Path) -> None:
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        tmp.mkdir(mode=0o755)
        name = artifact_file_name(artifact.url).lower()
        try:
            if name.endswith(".zip") or zipfile.is_zipfile(blob):
                self._unzip(artifact.url, blob, tmp)
            else:
                self._untar(artifact.url, blob, tmp)
            _read_only(tmp)
            os.replace(tmp, target)
        except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError) as err:
            raise ArtifactError(f"{artifact.url}: cannot unpack: {_describe(err)}") from None
        finally:
            if tmp.exists():
                _remove(tmp)

    def _untar(self, url: str, blob: Path, dest: Path) -> None:
        with tarfile.open(blob) as archive:
            members = []
            total = 0
            for member in archive:
                if member.name.startswith("/") or ".." in member.name.split("/"):
                    raise ArtifactError(f"{url}: refused member {member.name!r}: absolute or outside the target")
                members.append(member)
                total += max(0, member.size)
                if len(members) > MAX_MEMBERS:
                    raise ArtifactError(f"{url}: more than {MAX_MEMBERS} members")
                if total > self.max_bytes:
                    raise ArtifactError(f"{url}: unpacks to more than the node's artifact cache")
            for member in members:
                try:
                    archive.extract(member, dest, filter="data")
                except tarfile.FilterError as err:
                    raise ArtifactError(f"{url}: refused member {member.name!r}: {err}") from None

    def _unzip(self, url: str, blob: Path, dest: Path) -> None:
        with zipfile.ZipFile(blob) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ArtifactError(f"{url}: more than {MAX_MEMBERS} members")
            if sum(i.file_size for i in infos) > self.max_bytes:
                raise ArtifactError(f"{url}: unpacks to more than the node's artifact cache")
            for info in infos:
                parts = info.filename.replace("\\", "/").split("/")
                kind = stat.S_IFMT(info.external_attr >> 16)
                if info.filename.startswith("/") or ".." in parts or (parts[0].endswith(":")):
                    raise ArtifactError(f"{url}: refused member {info.filename!r}: outside the target")
                if kind == stat.S_IFLNK:
                    raise ArtifactError(f"{url}: refused member {info.filename!r}: links are not unpacked from zip")
                if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise ArtifactError(f"{url}: refused member {info.filename!r}: not a file or directory")
            for info in infos:
                path = Path(archive.extract(info, dest))
                mode = (info.external_attr >> 16) & 0o777
                if mode and path.is_file():
                    os.chmod(path, mode & 0o755)

    # ------------------------------------------------------------ eviction

    def _evict(self, keep: set[Path]) -> None:
        entries = [p for sub in ("blobs", "files", "trees") for p in (self.root / sub).iterdir()]
        sized = sorted(((_last_use(p), _size(p), p) for p in entries), key=lambda e: e[0])
        total = sum(size for _, size, _ in sized)
        for _, size, path in sized:
            if total <= self.max_bytes:
                break
            if path in keep:
                continue
            _remove(path)
            total -= size
            log.info("artifact cache: evicted %s (%d bytes)", path.name, size)


class _Retryable(Exception):
    """A network failure worth another attempt."""


def _mode(artifact: core_pb2.Artifact) -> int:
    return artifact.mode if artifact.HasField("mode") else 0o555


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return f"{type(err).__name__}: {err}"


_last_stamp = 0


def _touch(path: Path) -> None:
    """Record a use as the entry's mtime, strictly later than every earlier one (the kernel's own clock for
    file times is coarse: two uses a millisecond apart could tie)."""
    global _last_stamp
    _last_stamp = max(_last_stamp + 1, time.time_ns())
    with contextlib.suppress(OSError):
        os.utime(path, ns=(_last_stamp, _last_stamp), follow_symlinks=False)


def _last_use(path: Path) -> int:
    try:
        return path.lstat().st_mtime_ns
    except OSError:
        return 0


def _size(path: Path) -> int:
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
        return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    except OSError:
        return 0


def _read_only(tree: Path) -> None:
    """Files of an unpacked tree lose their write bits (they are shared by hard links); dirs stay usable."""
    for path in tree.rglob("*"):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode & 0o7777
        os.chmod(path, (mode & ~0o7222) | (0o555 if path.is_dir() else 0o444 if not mode & 0o111 else 0o555))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for sub in path.rglob("*"):
            if sub.is_dir() and not sub.is_symlink():
                with contextlib.suppress(OSError):
                    os.chmod(sub, 0o700)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
