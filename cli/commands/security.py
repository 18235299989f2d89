"""``navarch pki``, ``navarch token`` and ``navarch auth``: certificates, join tokens, and access checks."""

from __future__ import annotations

import secrets
import string
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from cli.commands.common import DURATION, namespace_option
from cli.config import Target
from cli.context import echo_lines, fail, run
from controlplane import pki
from controlplane.api import namespaces
from controlplane.api.errors import AlreadyExistsError, NotFoundError
from controlplane.api.pb import auth_pb2, core_pb2
from controlplane.client.client import ApiClient
from controlplane.clusterpki import init_cluster_pki, issue_user

BOOTSTRAP_NAMESPACE = namespaces.SYSTEM
BOOTSTRAP_PREFIX = "bootstrap-token-"
BOOTSTRAP_TYPE = "bootstrap.navarch.io/token"
_ALPHABET = string.ascii_lowercase + string.digits


# ----------------------------------------------------------------- pki


@click.group(name="pki")
def pki_group() -> None:
    """Create the cluster's certificates."""


@pki_group.command(name="init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--apiserver-san", multiple=True, help="Address or name the API servers are reached at (repeat).")
@click.option("--etcd-san", multiple=True, help="Address or name of an etcd member (repeat).")
@click.option("--validity", default="8760h", show_default=True, type=DURATION, help="Lifetime of certificates.")
@click.option("--ca-validity", default="87600h", show_default=True, type=DURATION, help="Lifetime of the CAs.")
@click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False), help="Sign with this existing CA ...")
@click.option("--ca-key", type=click.Path(exists=True, dir_okay=False), help="... and its (ECDSA) key.")
def pki_init(
    directory: str,
    apiserver_san: tuple[str, ...],
    etcd_san: tuple[str, ...],
    validity: float,
    ca_validity: float,
    ca_cert: str | None,
    ca_key: str | None,
) -> None:
    """Create a cluster CA, an etcd CA and every component's certificate (ECDSA P-256) in DIRECTORY."""
    if bool(ca_cert) != bool(ca_key):
        fail("--ca-cert and --ca-key go together")
    try:
        made = init_cluster_pki(
            Path(directory),
            apiserver_sans=pki.Sans.parse(apiserver_san),
            etcd_sans=pki.Sans.parse(etcd_san),
            validity=validity,
            ca_validity=ca_validity,
            existing_ca=(ca_cert, ca_key) if ca_cert and ca_key else None,
        )
    except (pki.CertificateError, OSError) as err:
        fail(str(err))
    pin = pki.ca_cert_hash(pki.load_cert(Path(made.ca).read_bytes()))
    echo_lines(
        [
            f"certificates written to {made.root}",
            f"cluster CA: {made.ca} ({pin})",
            f"etcd CA: {made.etcd_ca}",
            f"admin: {made.cert('admin')} (group {pki.MASTERS_GROUP})",
        ]
    )


@pki_group.command(name="issue-user")
@click.argument("user")
@click.option("--pki-dir", required=True, type=click.Path(exists=True, file_okay=False), help="From pki init.")
@click.option("--group", "groups", multiple=True, help="Group (certificate O), repeat for several.")
@click.option("--validity", default="8760h", show_default=True, type=DURATION)
def pki_issue_user(user: str, pki_dir: str, groups: tuple[str, ...], validity: float) -> None:
    """Sign a client certificate for USER with the cluster CA (bind roles to the user or its groups)."""
    from controlplane.clusterpki import ClusterPki

    try:
        cert, key = issue_user(ClusterPki(Path(pki_dir)), user, groups, validity=validity)
    except (pki.CertificateError, OSError) as err:
        fail(str(err))
    echo_lines([f"certificate: {cert}", f"key: {key}"])


# --------------------------------------------------------------- token


@click.group(name="token")
def token_group() -> None:
    """Bootstrap tokens that let new nodes join."""


def _ca_pin(target: Target) -> str:
    if not target.certificate_authority:
        return ""
    try:
        return pki.ca_cert_hash(pki.load_cert(Path(target.certificate_authority).read_bytes()))
    except (OSError, pki.CertificateError):
        return ""


@token_group.command(name="create")
@click.option("--ttl", default="24h", show_default=True, type=DURATION, help="How long the token works (0: ever).")
@click.option("--description", default="", help="Why the token exists.")
@click.option("--bootstrap-server", default="", help="Token port to show in the join command (host:port).")
def token_create(ttl: float, description: str, bootstrap_server: str) -> None:
    """Create a bootstrap token and print it (and the join flags when the CA is known)."""
    token_id = "".join(secrets.choice(_ALPHABET) for _ in range(6))
    token_secret = "".join(secrets.choice(_ALPHABET) for _ in range(16))

    async def body(client: ApiClient, target: Target) -> None:
        secret = core_pb2.Secret(type=BOOTSTRAP_TYPE)
        secret.metadata.name = BOOTSTRAP_PREFIX + token_id
        secret.metadata.namespace = BOOTSTRAP_NAMESPACE
        secret.data["token-id"] = token_id.encode()
        secret.data["token-secret"] = token_secret.encode()
        secret.data["usage-bootstrap-authentication"] = b"true"
        if ttl > 0:
            expires = datetime.now(UTC) + timedelta(seconds=ttl)
            secret.data["expiration"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
        if description:
            secret.data["description"] = description.encode()
        try:
            await client.create(secret)
        except AlreadyExistsError:
            fail("token id collision; run the command again")
        click.echo(f"{token_id}.{token_secret}")
        pin = _ca_pin(target)
        if pin:
            server = bootstrap_server or "<api-server>:6444"
            click.echo(
                f"join with: navarch-agent --join-token {token_id}.{token_secret} --ca-cert-hash {pin} "
                f"--bootstrap-server {server} --server {','.join(target.servers)} ...",
                err=True,
            )

    run(body)


@token_group.command(name="list")
def token_list() -> None:
    """List bootstrap tokens (ids and expiry, never secrets)."""

    async def body(client: ApiClient, target: Target) -> None:
        listed = await client.list(core_pb2.Secret, BOOTSTRAP_NAMESPACE)
        rows = [("TOKEN ID", "EXPIRES", "DESCRIPTION")]
        for s in listed.items:
            if s.type == BOOTSTRAP_TYPE:
                rows.append(
                    (
                        s.data.get("token-id", b"").decode(),
                        s.data.get("expiration", b"never").decode(),
                        s.data.get("description", b"").decode(),
                    )
                )
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        echo_lines(["   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows])

    run(body)


@token_group.command(name="delete")
@click.argument("token_id")
def token_delete(token_id: str) -> None:
    """Delete a bootstrap token (by id, or the whole token)."""
    token_id = token_id.partition(".")[0]

    async def body(client: ApiClient, target: Target) -> None:
        try:
            await client.delete(core_pb2.Secret, BOOTSTRAP_PREFIX + token_id, BOOTSTRAP_NAMESPACE)
        except NotFoundError:
            fail(f'bootstrap token "{token_id}" not found')
        click.echo(f'bootstrap token "{token_id}" deleted')

    run(body)


# ---------------------------------------------------------------- auth


@click.group(name="auth")
def auth_group() -> None:
    """Inspect authorization."""


@auth_group.command(name="can-i")
@click.argument("verb")
@click.argument("resource")
@click.argument("name", required=False, default="")
@namespace_option
@click.option("--as", "as_user", default="", help="Ask for another user (needs permission to review others).")
@click.option("--as-group", multiple=True, help="Groups of --as (repeat).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Ask about every namespace.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; the exit code answers (0 yes, 1 no).")
def can_i(
    verb: str,
    resource: str,
    name: str,
    as_user: str,
    as_group: tuple[str, ...],
    all_namespaces: bool,
    quiet: bool,
) -> None:
    """Whether you (or --as USER) may VERB RESOURCE [NAME]: prints yes or no, exit code 0 or 1."""

    async def body(client: ApiClient, target: Target) -> bool:
        req = auth_pb2.AccessReviewRequest(
            verb=verb,
            resource=resource,
            name=name,
            namespace="" if all_namespaces else target.namespace,
            user=as_user,
            groups=list(as_group),
        )
        resp = await client.call_auth(lambda stub, t: stub.AccessReview(req, timeout=t), f"can-i {verb} {resource}")
        if not quiet:
            click.echo("yes" if resp.allowed else "no")
            if not resp.allowed and resp.reason:
                click.echo(f"({resp.reason})", err=True)
        return bool(resp.allowed)

    sys.exit(0 if run(body) else 1)


@auth_group.command(name="whoami")
def whoami() -> None:
    """Who the API server takes you for: user, groups, and how you were authenticated."""

    async def body(client: ApiClient, target: Target) -> None:
        resp = await client.call_auth(lambda stub, t: stub.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=t), "whoami")
        echo_lines(
            [f"Username: {resp.user}", f"Groups:   {', '.join(resp.groups)}", f"Via:      {resp.authenticated_by}"]
        )

    run(body)
