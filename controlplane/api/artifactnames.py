"""How an artifact's URL names its file and whether it is unpacked: one rule for the API server's validation
and the agent's fetcher (kept apart from ``validation`` so the agent does not load the whole validator)."""

from __future__ import annotations

import urllib.parse

from controlplane.api.pb import core_pb2

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar", ".zip")


def artifact_file_name(url: str) -> str:
    """The last element of a URL's path, without query or fragment ("" for a URL ending in '/')."""
    return urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]


def artifact_is_archive(artifact: core_pb2.Artifact) -> bool:
    """Whether an artifact is unpacked: its ``extract``, else by the URL's file name."""
    if artifact.HasField("extract"):
        return artifact.extract
    return artifact_file_name(artifact.url).lower().endswith(ARCHIVE_SUFFIXES)
