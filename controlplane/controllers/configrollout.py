"""The config-rollout controller: ``reloadPolicy: {mode: Rollout}`` — a Deployment rolls when a ConfigMap or
Secret its pods reference changes.

For every Deployment with a container whose policy is Rollout, the controller fingerprints the versions of
the objects those containers reference (``controlplane.api.configrefs``) and keeps the last fingerprint it
saw in the Deployment's annotation ``navarch.io/config-hash``. When the fingerprint moves, it writes it into
the pod template's annotation of the same name as well: the template changed, so the Deployment controller
rolls the pods as for any template change, under the Deployment's ``maxUnavailable`` and ``maxSurge``,
waiting for readiness. The first fingerprint of a Deployment is only recorded (creating a Deployment does
not roll it again). Handlers only enqueue: a changed ConfigMap or Secret enqueues the Deployments of its
namespace that reference it.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from google.protobuf.message import Message

from controlplane.api.configrefs import ConfigRef, config_references, fingerprint
from controlplane.api.errors import ConflictError, NotFoundError
from controlplane.api.pb import apps_pb2, core_pb2
from controlplane.client.indexer import object_key
from controlplane.controllers.base import Controller, ControllerContext

log = logging.getLogger(__name__)

ANNOTATION = "navarch.io/config-hash"


def rollout_references(d: apps_pb2.Deployment) -> list[ConfigRef]:
    """The ConfigMaps and Secrets the Deployment's Rollout containers reference (sorted, each once)."""
    spec = d.spec.template.spec
    refs: set[ConfigRef] = set()
    for c in spec.containers:
        if c.reload_policy.mode == "Rollout":
            refs.update(config_references(spec, c))
    return sorted(refs)


class ConfigRolloutController(Controller):
    """Rolls Deployments whose referenced configuration changed (see the module)."""

    name: ClassVar[str] = "config-rollout"
    default_workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.deployments = ctx.informers.informer(apps_pb2.Deployment)
        self.configmaps = ctx.informers.informer(core_pb2.ConfigMap)
        self.secrets = ctx.informers.informer(core_pb2.Secret)
        self.deployments.add_event_handler(self.enqueue, lambda old, new: self.enqueue(new), None)
        for informer, kind in ((self.configmaps, "ConfigMap"), (self.secrets, "Secret")):
            informer.add_event_handler(
                lambda obj, kind=kind: self._config_changed(kind, obj),  # type: ignore[misc]
                lambda old, new, kind=kind: self._config_changed(kind, new),  # type: ignore[misc]
                lambda obj, kind=kind: self._config_changed(kind, obj),  # type: ignore[misc]
            )

    def _config_changed(self, kind: str, obj: Message) -> None:
        m = obj.metadata  # type: ignore[attr-defined]
        ref = ConfigRef(kind, m.name)
        for d in self.deployments.store.by_index("namespace", m.namespace):
            if ref in rollout_references(d):
                self.enqueue(d)

    def _lookup(self, namespace: str, ref: ConfigRef) -> Message | None:
        store = self.configmaps.store if ref.kind == "ConfigMap" else self.secrets.store
        return store.get_by_name(namespace, ref.name)

    async def reconcile(self, key: str) -> None:
        d = self.deployments.store.get(key)
        if d is None or d.metadata.HasField("deletion_timestamp"):
            return
        refs = rollout_references(d)
        if not refs:
            return
        namespace = d.metadata.namespace
        now = fingerprint({ref: self._lookup(namespace, ref) for ref in refs})
        seen = d.metadata.annotations.get(ANNOTATION)
        if seen == now:
            return
        patch: dict[str, object] = {
            "metadata": {"annotations": {ANNOTATION: now}, "resourceVersion": d.metadata.resource_version}
        }
        if seen is not None:
            patch["spec"] = {"template": {"metadata": {"annotations": {ANNOTATION: now}}}}
            changed = ", ".join(f"{r.kind.lower()}/{r.name}" for r in refs)
            self.recorder.event(d, "Normal", "ConfigChanged", f"Configuration changed ({changed}): rolling out")
        try:
            await self.client.patch(apps_pb2.Deployment, d.metadata.name, patch, namespace)
        except ConflictError:
            self.queue.add(object_key(d))  # changed meanwhile: look again with the newer version
        except NotFoundError:
            pass
