"""``navarch``: the command line, with kubectl's verbs and feel.

Every command resolves its target (flags > context in the config file > defaults), talks to the API
servers through ``controlplane.client``, and reports errors as one line without a traceback.
"""

from __future__ import annotations

import click

from cli.commands import (
    apply,
    cluster,
    config_cmd,
    delete,
    describe,
    edit,
    get,
    local,
    nodes,
    pods,
    portforward,
    rollout,
    security,
)
from cli.context import Options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-s", "--server", default=None, envvar="NAVARCH_SERVER", help="API servers to talk to (comma list of host:port)."
)
@click.option("--context", default=None, help="The config file context to use.")
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds per request.",
)
@click.pass_context
def main(ctx: click.Context, server: str | None, context: str | None, request_timeout: float) -> None:
    """Operate a Navarch cluster."""
    ctx.obj = Options(server=server, context=context, request_timeout=request_timeout)


for _command in [
    get.get,
    describe.describe,
    apply.apply,
    apply.create,
    apply.diff,
    delete.delete,
    edit.edit,
    edit.label,
    edit.annotate,
    edit.patch,
    edit.scale,
    edit.autoscale,
    rollout.rollout,
    nodes.cordon,
    nodes.uncordon,
    nodes.drain,
    nodes.top,
    pods.logs,
    pods.exec_,
    portforward.port_forward,
    config_cmd.config_group,
    cluster.version,
    cluster.api_resources,
    cluster.cluster_info,
    cluster.completion,
    local.up,
    local.down,
    security.pki_group,
    security.token_group,
    security.auth_group,
]:
    main.add_command(_command)
