"""navarch pki, token and auth commands (against the session's plain-text server, whose callers are
administrators)."""

from __future__ import annotations

import re
from pathlib import Path

from controlplane import pki
from tests.cli.conftest import Cli


async def test_pki_init_writes_every_certificate_and_refuses_to_overwrite(cli: Cli, tmp_path: Path) -> None:
    made = await cli("pki", "init", str(tmp_path / "pki"), "--apiserver-san", "10.0.0.11", "--validity", "24h")
    assert made.code == 0, made.err
    for name in (
        "ca",
        "apiserver",
        "apiserver-agent-client",
        "scheduler",
        "controller-manager",
        "admin",
        "etcd/ca",
        "etcd/server",
        "etcd/peer",
        "apiserver-etcd-client",
    ):
        assert (tmp_path / "pki" / f"{name}.pem").exists(), name
        assert (tmp_path / "pki" / f"{name}-key.pem").stat().st_mode & 0o077 == 0, name
    ca = pki.load_cert((tmp_path / "pki" / "ca.pem").read_bytes())
    assert pki.ca_cert_hash(ca) in made.out
    served = pki.load_certs((tmp_path / "pki" / "apiserver.pem").read_bytes())
    assert served[1] == ca  # the CA follows the serving certificate, for joining agents
    assert "10.0.0.11" in str(served[0].extensions)
    again = await cli("pki", "init", str(tmp_path / "pki"))
    assert again.code == 1 and "already holds a CA key" in again.err
    user = await cli("pki", "issue-user", "alice", "--group", "dev", "--pki-dir", str(tmp_path / "pki"))
    assert user.code == 0, user.err
    cert = pki.load_cert((tmp_path / "pki" / "users" / "alice.pem").read_bytes())
    assert pki.identity_of(cert) == pki.Identity("alice", ("dev",))


async def test_tokens_are_created_listed_and_deleted(cli: Cli) -> None:
    created = await cli("token", "create", "--ttl", "1h", "--description", "for w9")
    assert created.code == 0, created.err
    token = created.out.strip()
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token)
    token_id = token.split(".")[0]
    listed = await cli("token", "list")
    assert token_id in listed.out and "for w9" in listed.out and token.split(".")[1] not in listed.out
    assert (await cli("token", "delete", token_id)).code == 0
    assert token_id not in (await cli("token", "list")).out
    gone = await cli("token", "delete", token_id)
    assert gone.code == 1 and "not found" in gone.err


async def test_auth_can_i_and_whoami(cli: Cli) -> None:
    me = await cli("auth", "whoami")
    assert "system:insecure" in me.out and "system:masters" in me.out
    yes = await cli("auth", "can-i", "create", "pods")
    assert (yes.code, yes.out.strip()) == (0, "yes")
    no = await cli("auth", "can-i", "create", "pods", "--as", "somebody")
    assert (no.code, no.out.strip()) == (1, "no")
    view = await cli("auth", "can-i", "get", "pods/log", "--as", "somebody", "--as-group", "system:masters")
    assert view.code == 0
    bad = await cli("auth", "can-i", "create", "widgets")
    assert bad.code == 1 and "widgets" in bad.err
