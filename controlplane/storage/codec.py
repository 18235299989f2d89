"""Object <-> etcd value: the bare kind message's protobuf bytes.

resourceVersion is not stored: it is the key's mod_revision, set on decode.
"""

from __future__ import annotations

from google.protobuf.message import Message

from controlplane.api.kinds import KindInfo
from controlplane.api.objects import meta


def encode(obj: Message) -> bytes:
    """The bytes to store for an object (without its resourceVersion)."""
    m = meta(obj)
    rv = m.resource_version
    m.resource_version = ""
    try:
        return obj.SerializeToString(deterministic=True)
    finally:
        m.resource_version = rv


def decode(info: KindInfo, value: bytes, mod_revision: int) -> Message:
    """The object stored in ``value``, with resourceVersion = ``mod_revision``."""
    obj = info.message()
    obj.ParseFromString(value)
    meta(obj).resource_version = str(mod_revision)
    return obj
