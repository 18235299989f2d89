"""Secrets at rest: ciphertext in etcd, readable through the API, and key rotation."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from controlplane.api import kinds
from controlplane.api.errors import PreconditionError
from controlplane.api.pb import core_pb2
from controlplane.apiserver.main import ApiServer, ApiServerConfig, SecurityConfig
from controlplane.client.client import ApiClient, ClientConfig
from controlplane.storage import EtcdClient, Store
from controlplane.storage.encryption import AESGCM_PREFIX, EncryptionConfig, EncryptionError
from controlplane.storage.keys import object_key
from tests.security.conftest import SecureCluster, write_encryption_config

SECRET = kinds.lookup("Secret")


def _secret(name: str, value: bytes) -> core_pb2.Secret:
    s = core_pb2.Secret()
    s.metadata.name, s.metadata.namespace = name, "default"
    s.data["password"] = value
    return s


async def _raw(secure: SecureCluster, name: str) -> bytes:
    etcd = EtcdClient(secure.etcd_config())
    await etcd.connect()
    try:
        resp = await etcd.kv.get(object_key(SECRET, "default", name), timeout=5)
        return bytes(resp.kvs[0].value)
    finally:
        await etcd.close()


async def test_a_secret_is_ciphertext_in_etcd_and_plain_through_the_api(secure: SecureCluster) -> None:
    async with secure.admin() as admin:
        await admin.create(_secret("db", b"correct-horse-battery-staple"))
        assert (await admin.get(core_pb2.Secret, "db", "default")).data["password"] == b"correct-horse-battery-staple"
    raw = await _raw(secure, "db")
    assert raw.startswith(AESGCM_PREFIX + b"key1:")
    assert b"correct-horse-battery-staple" not in raw
    assert base64.b64encode(b"correct-horse-battery-staple") not in raw


async def test_rotating_keys_keeps_old_secrets_readable(secure: SecureCluster, tmp_path: Path) -> None:
    async with secure.admin() as admin:
        await admin.create(_secret("before-rotation", b"old-key-value"))
    key2 = base64.b64encode(os.urandom(32)).decode()
    rotated_path = tmp_path / "rotated.yaml"
    write_encryption_config(rotated_path, ("key2", key2), ("key1", secure.key1))
    only_new_path = tmp_path / "only-new.yaml"
    write_encryption_config(only_new_path, ("key2", key2))
    etcd = EtcdClient(secure.etcd_config())
    await etcd.connect()
    try:
        rotated = Store(etcd, EncryptionConfig.load(str(rotated_path)))
        old = await rotated.get(SECRET, "default", "before-rotation")
        assert old.data["password"] == b"old-key-value"
        # Any write re-encrypts under the new first key.
        old.metadata.annotations["rotated"] = "yes"
        await rotated.update(SECRET, old, int(old.metadata.resource_version))
        fresh = await rotated.create(SECRET, _secret("after-rotation", b"new-key-value"))
        assert fresh.data["password"] == b"new-key-value"
        only_new = Store(etcd, EncryptionConfig.load(str(only_new_path)))
        assert (await only_new.get(SECRET, "default", "before-rotation")).data["password"] == b"old-key-value"
        # A secret still under key1 does not decrypt once key1 is dropped, and says which key is missing.
        async with secure.admin() as admin:
            await admin.create(_secret("still-key1", b"x"))
        with pytest.raises(PreconditionError, match=r'still-key1 cannot be read: .* key "key1"'):
            await only_new.get(SECRET, "default", "still-key1")
    finally:
        await etcd.close()
    raw = await _raw(secure, "after-rotation")
    assert raw.startswith(AESGCM_PREFIX + b"key2:")


def test_a_ciphertext_moved_to_another_key_does_not_decrypt() -> None:
    config = EncryptionConfig.parse(
        {
            "kind": "EncryptionConfiguration",
            "resources": [
                {
                    "resources": ["secrets"],
                    "providers": [
                        {"aesgcm": {"keys": [{"name": "k", "secret": base64.b64encode(os.urandom(32)).decode()}]}}
                    ],
                }
            ],
        }
    )
    enc = config.for_resource("secrets")
    sealed = enc.to_storage(b"payload", "/registry/secrets/a/one")
    assert enc.from_storage(sealed, "/registry/secrets/a/one") == b"payload"
    with pytest.raises(EncryptionError):
        enc.from_storage(sealed, "/registry/secrets/a/two")
    with pytest.raises(EncryptionError, match="no identity provider"):
        enc.from_storage(b"plain", "/registry/secrets/a/one")


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"kind": "Other"}, "kind must be EncryptionConfiguration"),
        (
            {
                "kind": "EncryptionConfiguration",
                "resources": [
                    {
                        "resources": ["secrets"],
                        "providers": [{"aesgcm": {"keys": [{"name": "k", "secret": "c2hvcnQ="}]}}],
                    }
                ],
            },
            "keys[0].secret: must decode to 16, 24 or 32 bytes",
        ),
        (
            {
                "kind": "EncryptionConfiguration",
                "resources": [{"resources": ["secrets"], "providers": [{"rot13": {}}]}],
            },
            "unknown provider 'rot13'",
        ),
    ],
)
def test_a_bad_encryption_config_names_the_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(EncryptionError, match=field.replace("[", r"\[").replace("]", r"\]")):
        EncryptionConfig.parse(doc)


async def test_an_api_server_without_a_secrets_key_starts_skips_it_and_serves_the_rest(
    secure: SecureCluster, tmp_path: Path
) -> None:
    async with secure.admin() as admin:
        await admin.create(_secret("under-key1", b"unreadable-later"))
    only_new = tmp_path / "only-new.yaml"
    write_encryption_config(only_new, ("key9", base64.b64encode(os.urandom(32)).decode()))
    server = ApiServer(
        ApiServerConfig(
            etcd=secure.etcd_config(),
            listen="127.0.0.1:0",
            compaction_interval=0,
            security=SecurityConfig(encryption_config=str(only_new)),
        )
    )
    await server.start()  # before: the watch cache's first list raised and the server never started
    try:
        cache = server.caches["Secret"]
        assert object_key(SECRET, "default", "under-key1") in cache.undecryptable
        assert await cache.wait_fresh(timeout=5)  # the skipped key still counts: the cache is current
        async with ApiClient(ClientConfig(endpoints=[f"127.0.0.1:{server.port}"], timeout=10)) as client:
            await client.create(_secret("written-now", b"new"))
            names = {s.metadata.name for s in (await client.list(core_pb2.Secret, "default")).items}
            assert "written-now" in names and "under-key1" not in names
            paged = await client.list(core_pb2.Secret, "default", limit=1)  # etcd pages skip it too
            assert paged.items
            with pytest.raises(PreconditionError, match=r'under-key1 cannot be read: .*key "key1"'):
                await client.get(core_pb2.Secret, "under-key1", "default")
        assert server.store.undecryptable >= 1
    finally:
        await server.stop()
