"""Reading manifests: files, directories (-R) and stdin, multi-document YAML or JSON, validated locally.

Every document is parsed and validated before anything is sent; a problem names the file, the
document's index and the field path.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from google.protobuf.message import Message

from controlplane.api import fieldvalidation, kinds
from controlplane.api.defaults import apply_defaults
from controlplane.api.errors import InvalidError
from controlplane.api.objects import from_manifest, meta
from controlplane.api.validation import validate

EXTENSIONS = (".yaml", ".yml", ".json")


@dataclass
class Document:
    """One manifest from a file."""

    source: str
    """``file.yaml[2]``: where it came from."""
    raw: dict[str, Any]
    """The manifest as written, less the fields Navarch does not model (what apply records and patches)."""
    obj: Message
    """The parsed object."""
    warnings: list[str] = field(default_factory=list)
    """Fields that were dropped (controlplane.api.fieldvalidation), one line each, naming the object."""


def _files(paths: list[str], recursive: bool) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for p in paths:
        if p == "-":
            out.append(("<stdin>", sys.stdin.read()))
            continue
        path = Path(p)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(f for f in path.glob(pattern) if f.is_file() and f.suffix in EXTENSIONS)
            out.extend((str(f), f.read_text()) for f in found)
        elif path.exists():
            out.append((str(path), path.read_text()))
        else:
            raise InvalidError(f'the path "{p}" does not exist')
    return out


def _documents(name: str, text: str) -> list[Any]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError as err:
            raise InvalidError(f"{name}: not valid JSON: {err}") from None
        if isinstance(data, dict) and data.get("kind") == "List":
            return list(data.get("items", []))
        return data if isinstance(data, list) else [data]
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise InvalidError(f"{name}: not valid YAML: {err}") from None
    out: list[Any] = []
    for d in docs:
        if isinstance(d, dict) and d.get("kind") == "List":
            out.extend(d.get("items", []))
        else:
            out.append(d)
    return out


def load(
    paths: list[str], *, recursive: bool = False, namespace: str = "", field_validation: str = fieldvalidation.STRICT
) -> list[Document]:
    """Parse and validate every document; raise one ``InvalidError`` listing every bad document.

    Fields unknown to Kubernetes follow ``field_validation`` (kubectl's ``--validate``: Strict refuses them);
    fields Kubernetes defines that Navarch does not model are dropped, with a warning on the document."""
    documents: list[Document] = []
    problems: list[str] = []
    for name, text in _files(paths, recursive):
        try:
            raw_docs = _documents(name, text)
        except InvalidError as err:
            problems.append(err.message)
            continue
        for index, raw in enumerate(raw_docs):
            where = f"{name}[{index}]"
            try:
                warnings: list[str] = []
                obj = from_manifest(raw, where=where, field_validation=field_validation, warnings=warnings)
                if isinstance(raw, dict):
                    raw = fieldvalidation.clean(raw, type(obj), policy=fieldvalidation.IGNORE).doc
                info = kinds.of_message(obj)
                m = meta(obj)
                if info.namespaced and not m.namespace:
                    m.namespace = namespace or "default"
                elif info.namespaced and namespace and m.namespace != namespace:
                    raise InvalidError(
                        f"{where}: the namespace of the object ({m.namespace}) does not match the namespace "
                        f"given with --namespace ({namespace})"
                    )
                check = type(obj)()
                check.CopyFrom(obj)
                _with_server_defaults(check)
                validate(check)
            except InvalidError as err:
                message = err.message if err.message.startswith(where) else f"{where}: {err.message}"
                problems.append(message)
                continue
            documents.append(Document(where, raw, obj, warnings))
    if problems:
        raise InvalidError("\n".join(problems))
    if not documents:
        raise InvalidError(f"no objects passed to apply in {', '.join(paths)}")
    return documents


def _with_server_defaults(obj: Message) -> None:
    """Fill what the server fills before validating (names from generateName, Job selectors)."""
    m = meta(obj)
    if not m.name and m.generate_name:
        m.name = m.generate_name + "xxxxx"
    if kinds.of_message(obj).kind == "Job" and not m.uid:
        m.uid = "00000000-0000-0000-0000-000000000000"
    apply_defaults(obj)
