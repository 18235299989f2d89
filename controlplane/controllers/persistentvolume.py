"""The persistent volume controller: provisions node-local volumes for claims, binds claims and volumes, and
releases (or deletes) a volume whose claim is gone — Kubernetes' PV controller and a local provisioner in one.

``reconcile("claim/<ns>/<name>")``:

- bound already (``spec.volumeName``): the claim's status says Bound with the volume's capacity, or Lost if
  the volume vanished;
- of storage class ``local`` with the scheduler's ``volume.kubernetes.io/selected-node`` annotation: a volume
  ``pvc-<claim uid>`` is made on that node (node affinity by ``metadata.name``, the requested capacity, reclaim
  policy Delete, ``spec.local.path`` = its name, ``claimRef`` = the claim), then the claim is bound to it;
- otherwise (a claim that names no class, or another class): bound to the smallest Available volume of the
  same class with enough capacity and the access modes asked, if there is one (static provisioning); it waits
  otherwise.

``reconcile("volume/<name>")``: a volume whose claim is gone (or was replaced: another uid) is Released, and
deleted under reclaim policy Delete (its node's agent then removes the directory); one with no claim is
Available.

Writes are guarded by resourceVersion, and the volume's ``claimRef`` is written before the claim names the
volume, so two claims never end up on one volume.
"""

from __future__ import annotations

from typing import ClassVar

from controlplane.api.errors import AlreadyExistsError, ConflictError, NotFoundError
from controlplane.api.pb import core_pb2, meta_pb2
from controlplane.api.volumes import LOCAL_CLASS, SELECTED_NODE, capacity_bytes, requested_bytes
from controlplane.client.events import NORMAL, WARNING
from controlplane.controllers.base import Controller, ControllerContext, copy

_CLAIM, _VOLUME = "claim/", "volume/"


def _class_of(pvc: core_pb2.PersistentVolumeClaim) -> str:
    return pvc.spec.storage_class_name if pvc.spec.HasField("storage_class_name") else ""


def provisioned_volume(pvc: core_pb2.PersistentVolumeClaim, node: str) -> core_pb2.PersistentVolume:
    """The local volume made for ``pvc`` on ``node``."""
    pv = core_pb2.PersistentVolume(api_version="v1", kind="PersistentVolume")
    pv.metadata.name = f"pvc-{pvc.metadata.uid}"
    pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] = "navarch.io/local"
    pv.spec.capacity["storage"] = pvc.spec.resources.requests["storage"]
    pv.spec.access_modes.extend(pvc.spec.access_modes)
    pv.spec.persistent_volume_reclaim_policy = "Delete"
    pv.spec.storage_class_name = LOCAL_CLASS
    pv.spec.volume_mode = "Filesystem"
    pv.spec.local.path = pv.metadata.name
    term = pv.spec.node_affinity.required.node_selector_terms.add()
    term.match_fields.add(key="metadata.name", operator="In", values=[node])
    pv.spec.claim_ref.CopyFrom(_ref(pvc))
    return pv


def _ref(pvc: core_pb2.PersistentVolumeClaim) -> meta_pb2.ObjectReference:
    m = pvc.metadata
    return meta_pb2.ObjectReference(
        api_version="v1", kind="PersistentVolumeClaim", namespace=m.namespace, name=m.name, uid=m.uid
    )


class PersistentVolumeController(Controller):
    """Binds claims to volumes, provisioning local ones."""

    name: ClassVar[str] = "persistentvolume"
    default_workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.claims = ctx.informers.informer(core_pb2.PersistentVolumeClaim)
        self.volumes = ctx.informers.informer(core_pb2.PersistentVolume)
        self.claims.add_event_handler(self._claim, lambda old, new: self._claim(new), self._claim_gone)
        self.volumes.add_event_handler(self._volume, lambda old, new: self._volume(new), None)

    def _claim(self, pvc: core_pb2.PersistentVolumeClaim) -> None:
        self.queue.add(f"{_CLAIM}{pvc.metadata.namespace}/{pvc.metadata.name}")

    def _claim_gone(self, pvc: core_pb2.PersistentVolumeClaim) -> None:
        if pvc.spec.volume_name:
            self.queue.add(f"{_VOLUME}{pvc.spec.volume_name}")
        for pv in self.volumes.store.objects():
            if pv.spec.claim_ref.uid == pvc.metadata.uid:
                self.queue.add(f"{_VOLUME}{pv.metadata.name}")

    def _volume(self, pv: core_pb2.PersistentVolume) -> None:
        self.queue.add(f"{_VOLUME}{pv.metadata.name}")
        ref = pv.spec.claim_ref
        if ref.name:
            self.queue.add(f"{_CLAIM}{ref.namespace}/{ref.name}")

    async def reconcile(self, key: str) -> None:
        if key.startswith(_CLAIM):
            await self._sync_claim(key[len(_CLAIM) :])
        elif key.startswith(_VOLUME):
            await self._sync_volume(key[len(_VOLUME) :])

    # ------------------------------------------------------------ claims

    async def _sync_claim(self, key: str) -> None:
        cached = self.claims.store.get(key)
        if cached is None or cached.metadata.HasField("deletion_timestamp"):
            return
        pvc = copy(cached)
        if pvc.spec.volume_name:
            await self._mark_bound(pvc)
            return
        if _class_of(pvc) == LOCAL_CLASS:
            node = pvc.metadata.annotations.get(SELECTED_NODE, "")
            if node:
                await self._provision(pvc, node)
            return
        await self._bind_static(pvc)

    async def _provision(self, pvc: core_pb2.PersistentVolumeClaim, node: str) -> None:
        pv = provisioned_volume(pvc, node)
        try:
            await self.client.create(pv)
            self.recorder.event(
                pvc, NORMAL, "ProvisioningSucceeded", f"Successfully provisioned volume {pv.metadata.name} on {node}"
            )
        except AlreadyExistsError:
            pass  # made by an earlier sync: bind to it
        await self._point_claim(pvc, pv.metadata.name)

    async def _bind_static(self, pvc: core_pb2.PersistentVolumeClaim) -> None:
        want = requested_bytes(pvc)
        modes = set(pvc.spec.access_modes)
        fits = [
            pv
            for pv in self.volumes.store.objects()
            if pv.spec.storage_class_name == _class_of(pvc)
            and (not pv.spec.claim_ref.name or pv.spec.claim_ref.uid == pvc.metadata.uid)
            and pv.status.phase in ("", "Available")
            and not pv.metadata.HasField("deletion_timestamp")
            and capacity_bytes(pv) >= want
            and modes <= set(pv.spec.access_modes)
        ]
        if not fits:
            return
        pv = copy(min(fits, key=lambda v: (capacity_bytes(v), v.metadata.name)))
        if pv.spec.claim_ref.uid != pvc.metadata.uid:
            pv.spec.claim_ref.CopyFrom(_ref(pvc))
            try:
                await self.client.update(pv)  # guarded: a racing claim makes this one try again
            except (ConflictError, NotFoundError):
                self._claim(pvc)
                return
        await self._point_claim(pvc, pv.metadata.name)

    async def _point_claim(self, pvc: core_pb2.PersistentVolumeClaim, volume: str) -> None:
        pvc.spec.volume_name = volume
        try:
            updated = await self.client.update(pvc)
        except NotFoundError:
            return
        await self._mark_bound(updated)

    async def _mark_bound(self, pvc: core_pb2.PersistentVolumeClaim) -> None:
        pv = self.volumes.store.get(pvc.spec.volume_name)
        if pv is None:
            try:
                pv = await self.client.get(core_pb2.PersistentVolume, pvc.spec.volume_name)
            except NotFoundError:
                if pvc.status.phase != "Lost":
                    pvc.status.phase = "Lost"
                    self.recorder.event(pvc, WARNING, "ClaimLost", f"Bound volume {pvc.spec.volume_name} is gone")
                    await self._write_claim_status(pvc)
                return
        if pv.spec.claim_ref.uid and pv.spec.claim_ref.uid != pvc.metadata.uid:
            # A claim that names a volume reserved for another claim (a hand-written volumeName) is not bound
            # to it: it stays Pending, and the agent refuses such a volume too.
            if pvc.status.phase != "Pending":
                pvc.status.phase = "Pending"
                await self._write_claim_status(pvc)
            return
        status = core_pb2.PersistentVolumeClaimStatus(phase="Bound")
        status.capacity.update(pv.spec.capacity)
        status.access_modes.extend(pv.spec.access_modes)
        status.conditions.extend(pvc.status.conditions)
        if status != pvc.status:
            pvc.status.CopyFrom(status)
            await self._write_claim_status(pvc)

    async def _write_claim_status(self, pvc: core_pb2.PersistentVolumeClaim) -> None:
        try:
            await self.client.update_status(pvc)
        except (ConflictError, NotFoundError):
            self._claim(pvc)

    # ----------------------------------------------------------- volumes

    async def _sync_volume(self, name: str) -> None:
        cached = self.volumes.store.get(name)
        if cached is None or cached.metadata.HasField("deletion_timestamp"):
            return
        pv = copy(cached)
        ref = pv.spec.claim_ref
        phase = "Available"
        if ref.name:
            claim = self.claims.store.get(f"{ref.namespace}/{ref.name}")
            if claim is None:
                try:
                    claim = await self.client.get(core_pb2.PersistentVolumeClaim, ref.name, ref.namespace)
                except NotFoundError:
                    claim = None
            if claim is None or (ref.uid and claim.metadata.uid != ref.uid):
                phase = "Released"
            elif claim.spec.volume_name == pv.metadata.name:
                phase = "Bound"
            else:
                phase = "Pending"  # reserved for the claim, which does not name it yet
        if phase == "Released" and pv.spec.persistent_volume_reclaim_policy == "Delete":
            try:
                await self.client.delete(core_pb2.PersistentVolume, pv.metadata.name, uid=pv.metadata.uid)
                self.recorder.event(pv, NORMAL, "VolumeDeleted", f"its claim {ref.namespace}/{ref.name} is gone")
            except NotFoundError:
                pass
            return
        if pv.status.phase != phase:
            pv.status.phase = phase
            try:
                await self.client.update_status(pv)
            except (ConflictError, NotFoundError):
                self._volume(pv)
