"""The container hooks every pod runs, in order: the one place that says which steps a container goes
through. A new behaviour is a new hook module and one line here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from nodeagent.pod.context import AgentContext
from nodeagent.pod.hooks import ContainerHook
from nodeagent.pod.hooks.artifacts import ArtifactsHook
from nodeagent.pod.hooks.environment import EnvironmentHook
from nodeagent.pod.hooks.identity import IdentityHook
from nodeagent.pod.hooks.lifecycle import LifecycleHook
from nodeagent.pod.hooks.limits import LimitsHook
from nodeagent.pod.hooks.logs import LogsHook
from nodeagent.pod.hooks.probes import ProbesHook
from nodeagent.pod.hooks.reload import ReloadHook
from nodeagent.sandbox import Sandbox


def container_hooks(
    ctx: AgentContext,
    sandbox: Sandbox,
    volumes: Callable[[], dict[str, Path]],
    limits: LimitsHook,
    pod_ports: dict[str, int],
    refresh_volumes: Callable[[], Awaitable[None]],
) -> list[ContainerHook]:
    """Environment first (the others read what it resolves), then identity, artifacts (placed for the user
    identity resolved), limits and logs (all before the process starts), probes and reload (while it runs)
    and lifecycle (before it is stopped)."""
    return [
        EnvironmentHook(ctx, sandbox, volumes, pod_ports),
        IdentityHook(ctx.config, sandbox, volumes, ctx.local_volumes),
        ArtifactsHook(ctx.artifacts, sandbox),
        limits,
        LogsHook(ctx.config),
        ProbesHook(ctx.config.node_ip),
        ReloadHook(ctx.client, ctx.config.volume_refresh, refresh_volumes),
        LifecycleHook(ctx.config.node_ip),
    ]
