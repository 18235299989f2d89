"""Helpers over API objects: envelopes, metadata, manifests (dict <-> protobuf), merge patches.

Manifests are Kubernetes-shaped dicts (camelCase fields). They map to protobuf
through ``google.protobuf.json_format``, which reports unknown fields by path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from controlplane.api import fieldvalidation, kinds
from controlplane.api.errors import InvalidError
from controlplane.api.pb import api_pb2, meta_pb2


def wrap(obj: Message) -> api_pb2.Object:
    """Put a bare object into the ``Object`` envelope."""
    info = kinds.of_message(obj)
    env = api_pb2.Object()
    getattr(env, info.envelope_field).CopyFrom(obj)
    return env


def unwrap(env: api_pb2.Object) -> Message:
    """The bare object inside an envelope (a reference, not a copy)."""
    info = kinds.of_envelope(env)
    msg: Message = getattr(env, info.envelope_field)
    return msg


def meta(obj: Message) -> meta_pb2.ObjectMeta:
    """The metadata of a bare object (a reference: changes write through)."""
    m: meta_pb2.ObjectMeta = obj.metadata  # type: ignore[attr-defined]
    return m


def describe(obj: Message) -> str:
    """``Kind namespace/name`` for messages, as Kubernetes writes it (``pods "web"``)."""
    info = kinds.of_message(obj)
    m = meta(obj)
    if m.name:
        name = m.name
    elif m.generate_name:
        name = m.generate_name + "*"
    else:
        name = "<unnamed>"
    if info.namespaced and m.namespace:
        return f'{info.kind} "{m.namespace}/{name}"'
    return f'{info.kind} "{name}"'


def from_manifest(
    doc: Mapping[str, Any],
    *,
    where: str = "",
    field_validation: str = fieldvalidation.STRICT,
    warnings: list[str] | None = None,
) -> Message:
    """Parse a manifest dict into its kind's message, checking apiVersion/kind and every field.

    ``where`` prefixes error messages (e.g. a file name and document index). Fields Kubernetes defines that
    Navarch does not model are dropped with a warning; fields unknown to Kubernetes follow ``field_validation``
    (controlplane.api.fieldvalidation). Warnings, each naming the object, are appended to ``warnings``.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(doc, Mapping):
        raise InvalidError(f"{prefix}a manifest must be a mapping, got {type(doc).__name__}")
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not api_version:
        raise InvalidError(f"{prefix}apiVersion: required", field="apiVersion")
    if not isinstance(kind, str) or not kind:
        raise InvalidError(f"{prefix}kind: required", field="kind")
    try:
        info = kinds.for_kind(api_version, kind)
    except InvalidError as err:
        raise InvalidError(prefix + err.message, field=err.field) from None
    name = ""
    md = doc.get("metadata")
    if isinstance(md, Mapping) and isinstance(md.get("name"), str):
        name = f' "{md["name"]}"'
    msg = info.message()
    try:
        cleaned = fieldvalidation.clean(dict(doc), info.message, policy=field_validation)
        json_format.ParseDict(cleaned.doc, msg)
    except InvalidError as err:
        raise InvalidError(f"{prefix}{kind}{name}: {err.message}", field=err.field) from None
    except json_format.ParseError as err:
        raise InvalidError(f"{prefix}{kind}{name}: {_clean_parse_error(str(err))}") from None
    if warnings is not None:
        warnings.extend(f"{prefix}{kind}{name}: {w}" for w in cleaned.warnings)
    return msg


def _clean_parse_error(text: str) -> str:
    # json_format names the message path ("Pod.spec") and then lists every available
    # field; rewrite the common case as a manifest field path and drop the list.
    first = text.split("Available Fields")[0].strip()
    unknown = re.search(r'has no field named "([^"]+)" at "([^"]+)"', first)
    if unknown:
        path = unknown.group(2).partition(".")[2]
        return f"{path + '.' if path else ''}{unknown.group(1)}: unknown field"
    at = re.search(r'^(.*) at "([^"]+)"', first, re.S)
    if at:
        path = at.group(2).partition(".")[2] or at.group(2)
        reason = re.sub(r"^Failed to parse \w+ field: ", "", at.group(1)).strip()
        return f"{path}: {reason}"
    chain = re.findall(r"Failed to parse (\w+) field: ", first)
    if chain:
        reason = re.sub(r"^(Failed to parse \w+ field: )+", "", first).rstrip(".")
        return f"{'.'.join(chain)}: {reason}"
    return first


def to_manifest(obj: Message) -> dict[str, Any]:
    """The manifest dict of a bare object (camelCase fields, defaults omitted).

    Unlike plain proto3 JSON, 64-bit integers stay numbers and whole IntOrString
    numbers stay integers, so the output reads like a Kubernetes manifest.
    """
    out: dict[str, Any] = json_format.MessageToDict(obj, preserving_proto_field_name=False)
    _numbers_as_in_kubernetes(out, obj.DESCRIPTOR)  # type: ignore[arg-type]
    return out


_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def _numbers_as_in_kubernetes(doc: dict[str, Any], desc: Descriptor) -> None:
    fields = {f.json_name: f for f in desc.fields}
    for key, value in doc.items():
        field = fields.get(key)
        if field is None:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for k, v in value.items():
                value[k] = _number(v, value_field)
        elif field.is_repeated:
            doc[key] = [_number(v, field) for v in value]
        else:
            doc[key] = _number(value, field)


def _number(value: Any, field: FieldDescriptor) -> Any:
    if field.type in _INT64_TYPES and isinstance(value, str):
        return int(value)
    if field.message_type is None:
        return value
    if field.message_type.full_name == "google.protobuf.Value":
        return int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(value, dict):
        _numbers_as_in_kubernetes(value, field.message_type)
    return value


def typed_manifest(obj: Message) -> dict[str, Any]:
    """``to_manifest`` with ``apiVersion`` and ``kind`` always set, first (as ``-o yaml`` and apply show it)."""
    info = kinds.of_message(obj)
    doc = to_manifest(obj)
    doc.pop("apiVersion", None)
    doc.pop("kind", None)
    return {"apiVersion": info.api_version, "kind": info.kind, **doc}
