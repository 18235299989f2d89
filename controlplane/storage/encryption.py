"""Encryption at rest: values of chosen resources (Secrets) are AES-GCM ciphertext in etcd.

The config file is Kubernetes' EncryptionConfiguration::

    kind: EncryptionConfiguration
    apiVersion: apiserver.config.k8s.io/v1
    resources:
      - resources: [secrets]
        providers:
          - aesgcm:
              keys:
                - {name: key2, secret: <base64 of 32 random bytes>}   # the first key encrypts new writes
                - {name: key1, secret: <base64>}                      # every listed key still decrypts
          - identity: {}                                              # and plain values stay readable

A stored value is ``navarch:enc:aesgcm:v1:<key name>:`` + 12-byte nonce + ciphertext. The etcd key is the
associated data, so a ciphertext copied under another key does not decrypt. Rotation: put a new key first,
restart the API servers, rewrite the Secrets (any update stores them under the new key), then drop the old key.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

AESGCM_PREFIX = b"navarch:enc:aesgcm:v1:"


class EncryptionError(Exception):
    """A stored value cannot be decrypted with the configured keys (or the config itself is wrong)."""


@dataclass(frozen=True)
class ResourceEncryption:
    """The providers of one resource: the first writes, all read."""

    keys: list[tuple[str, AESGCM]] = field(default_factory=list)
    """AES-GCM keys in order (empty: no aesgcm provider)."""
    writes_encrypted: bool = False
    """Whether the first provider is aesgcm (else identity writes plain values)."""
    reads_plain: bool = True
    """Whether an identity provider is listed (plain values remain readable)."""

    def to_storage(self, data: bytes, key: str) -> bytes:
        """The value to put in etcd."""
        if not self.writes_encrypted:
            return data
        name, aead = self.keys[0]
        nonce = os.urandom(12)
        return AESGCM_PREFIX + name.encode() + b":" + nonce + aead.encrypt(nonce, data, key.encode())

    def from_storage(self, data: bytes, key: str) -> bytes:
        """The plain value of what etcd holds."""
        if not data.startswith(AESGCM_PREFIX):
            if not self.reads_plain:
                raise EncryptionError(
                    f"{key} is stored unencrypted and the encryption config lists no identity provider"
                )
            return data
        rest = data[len(AESGCM_PREFIX) :]
        name, sep, sealed = rest.partition(b":")
        found = next((aead for n, aead in self.keys if n.encode() == name), None)
        if not sep or found is None:
            shown = name.decode(errors="replace")
            raise EncryptionError(f'{key} is encrypted with key "{shown}", which the encryption config does not list')
        try:
            return found.decrypt(sealed[:12], sealed[12:], key.encode())
        except Exception as err:  # cryptography raises InvalidTag; anything else is equally fatal here
            raise EncryptionError(f'{key} does not decrypt with key "{name.decode()}" ({type(err).__name__})') from None


PLAIN = ResourceEncryption()


@dataclass(frozen=True)
class EncryptionConfig:
    """Which resources are encrypted, and how."""

    resources: Mapping[str, ResourceEncryption] = field(default_factory=dict)

    def for_resource(self, plural: str) -> ResourceEncryption:
        """The providers of a resource (plain for resources the config does not name)."""
        return self.resources.get(plural, PLAIN)

    @classmethod
    def load(cls, path: str) -> EncryptionConfig:
        """Read and check an EncryptionConfiguration file; ``EncryptionError`` naming the field otherwise."""
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise EncryptionError(f"cannot read the encryption config {path}: {err}") from None
        return cls.parse(doc, path)

    @classmethod
    def parse(cls, doc: Any, where: str = "encryption config") -> EncryptionConfig:
        """Build from the parsed document."""
        if not isinstance(doc, dict) or doc.get("kind") != "EncryptionConfiguration":
            raise EncryptionError(f"{where}: kind must be EncryptionConfiguration")
        out: dict[str, ResourceEncryption] = {}
        for i, entry in enumerate(doc.get("resources") or []):
            path = f"{where}: resources[{i}]"
            if not isinstance(entry, dict) or not entry.get("resources") or not entry.get("providers"):
                raise EncryptionError(f"{path}: needs resources and providers")
            enc = _providers(entry["providers"], path)
            for resource in entry["resources"]:
                out[str(resource).split(".")[0]] = enc
        return cls(out)


def _providers(providers: Any, path: str) -> ResourceEncryption:
    keys: list[tuple[str, AESGCM]] = []
    first: str | None = None
    identity = False
    for j, provider in enumerate(providers):
        if not isinstance(provider, dict) or len(provider) != 1:
            raise EncryptionError(f"{path}.providers[{j}]: one of aesgcm, identity")
        kind, body = next(iter(provider.items()))
        first = first or kind
        if kind == "identity":
            identity = True
        elif kind == "aesgcm":
            for k, key in enumerate((body or {}).get("keys") or []):
                where = f"{path}.providers[{j}].aesgcm.keys[{k}]"
                name, secret = str(key.get("name", "")), str(key.get("secret", ""))
                if not name or ":" in name:
                    raise EncryptionError(f"{where}.name: required, without ':'")
                try:
                    raw = base64.b64decode(secret, validate=True)
                except (binascii.Error, ValueError):
                    raise EncryptionError(f"{where}.secret: not valid base64") from None
                if len(raw) not in (16, 24, 32):
                    raise EncryptionError(f"{where}.secret: must decode to 16, 24 or 32 bytes, not {len(raw)}")
                keys.append((name, AESGCM(raw)))
            if not keys:
                raise EncryptionError(f"{path}.providers[{j}].aesgcm.keys: at least one key")
        else:
            raise EncryptionError(f"{path}.providers[{j}]: unknown provider {kind!r} (aesgcm, identity)")
    return ResourceEncryption(keys, first == "aesgcm", identity)


def new_key() -> str:
    """A fresh 256-bit key, base64-encoded for the config file."""
    return base64.b64encode(os.urandom(32)).decode()
