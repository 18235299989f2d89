"""File operations inside directories a workload can write, that never follow a link the workload planted.

The agent (often root) writes into a pod's volume directories, which belong to the pod's user. A workload
that swaps a file or directory there for a symlink must not get root to write, chmod or chown anything
elsewhere. So every step is relative to a directory file descriptor opened with ``O_NOFOLLOW|O_DIRECTORY``,
files are created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` under a temporary name and renamed into place (a rename
replaces a link, it never writes through one), and ownership and mode are set on the open descriptor.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@contextlib.contextmanager
def opened_dir(path: str, dir_fd: int | None = None) -> Iterator[int]:
    """A directory opened without following a final symlink (``path`` relative to ``dir_fd`` if given)."""
    fd = os.open(path, DIR_FLAGS, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def ensure_dir(dir_fd: int, name: str, mode: int = 0o755) -> int:
    """Open the directory ``name`` under ``dir_fd`` (made if missing; a link or file in its place is removed
    first); the caller closes the returned descriptor."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as err:
        if err.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        os.unlink(name, dir_fd=dir_fd)  # a symlink or file where a directory belongs: the link itself goes
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, mode, dir_fd=dir_fd)
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def walk_to(dir_fd: int, parts: list[str], owner: tuple[int, int] | None = None) -> int:
    """Open (making them) the nested directories ``parts`` under ``dir_fd``; the caller closes the result.
    With ``owner``, each directory walked is given to it (on its descriptor)."""
    fd = os.dup(dir_fd)
    try:
        for part in parts:
            nxt = ensure_dir(fd, part)
            os.close(fd)
            fd = nxt
            if owner is not None:
                _give(fd, owner)
    except BaseException:
        os.close(fd)  # a workload racing the walk makes it fail: the descriptor must not leak (4,000 in 30 s did)
        raise
    return fd


def _give(fd: int, owner: tuple[int, int]) -> None:
    if os.geteuid() == 0 or owner[0] == os.geteuid():
        with contextlib.suppress(PermissionError):
            os.fchown(fd, *owner)


def link_into(src: str, dir_fd: int, name: str) -> None:
    """Make ``name`` under ``dir_fd`` a hard link of ``src`` (a trusted path), replacing what is there (a link
    the workload planted is replaced, never followed). ``OSError`` (e.g. EXDEV) when a link is impossible."""
    tmp = f".{name}.navarch-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    os.link(src, tmp, dst_dir_fd=dir_fd, follow_symlinks=False)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def copy_into(src: str, dir_fd: int, name: str, mode: int, owner: tuple[int, int]) -> None:
    """Make ``name`` under ``dir_fd`` a copy of ``src`` (a trusted path) with ``mode`` and ``owner``,
    streamed, created under a temporary name and renamed into place."""
    tmp = f".{name}.navarch-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        with open(src, "rb") as source:
            while chunk := source.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        _give(fd, owner)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def symlink_into(target: str, dir_fd: int, name: str) -> None:
    """Make ``name`` under ``dir_fd`` a symlink to ``target`` (created aside, renamed into place)."""
    tmp = f".{name}.navarch-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    os.symlink(target, tmp, dir_fd=dir_fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def same_content(dir_fd: int, name: str, data: bytes, mode: int, owner: tuple[int, int]) -> bool:
    """Whether ``name`` is a regular file (not a link) with this content, mode and owner."""
    try:
        # O_NONBLOCK: a FIFO the workload put there must not block the agent on open.
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o7777) != mode or (st.st_uid, st.st_gid) != owner or st.st_size != len(data):
            return False
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read() == data
    finally:
        os.close(fd)


def replace_file(dir_fd: int, name: str, data: bytes, mode: int, owner: tuple[int, int]) -> None:
    """Atomically make ``name`` under ``dir_fd`` a regular file with ``data``, ``mode`` and ``owner``."""
    tmp = f".{name}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if os.geteuid() == 0 or owner[0] == os.geteuid():
            with contextlib.suppress(PermissionError):
                os.fchown(fd, *owner)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def remove_files_except(dir_fd: int, keep: set[str]) -> None:
    """Unlink the regular files and links directly under ``dir_fd`` not named in ``keep`` (dot-files stay)."""
    for entry in os.scandir(dir_fd):
        if entry.name in keep or entry.name.startswith("."):
            continue
        if entry.is_symlink() or entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.name, dir_fd=dir_fd)
