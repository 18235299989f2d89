"""Every controller by name (the names ``--controllers`` and ``--concurrent-<name>-syncs`` use)."""

from __future__ import annotations

from controlplane.controllers.base import Controller
from controlplane.controllers.configrollout import ConfigRolloutController
from controlplane.controllers.cronjob import CronJobController
from controlplane.controllers.daemonset import DaemonSetController
from controlplane.controllers.deployment import DeploymentController
from controlplane.controllers.disruption import DisruptionController
from controlplane.controllers.endpoints import EndpointsController
from controlplane.controllers.garbagecollector import GarbageCollector
from controlplane.controllers.horizontalpodautoscaler import HorizontalPodAutoscalerController
from controlplane.controllers.job import JobController
from controlplane.controllers.namespace import NamespaceController
from controlplane.controllers.nodelifecycle import NodeLifecycleController
from controlplane.controllers.persistentvolume import PersistentVolumeController
from controlplane.controllers.podgc import PodGCController
from controlplane.controllers.replicaset import ReplicaSetController
from controlplane.controllers.statefulset import StatefulSetController
from controlplane.controllers.tainteviction import TaintEvictionController

CONTROLLERS: dict[str, type[Controller]] = {
    c.name: c
    for c in (
        ReplicaSetController,
        DeploymentController,
        DaemonSetController,
        StatefulSetController,
        JobController,
        CronJobController,
        DisruptionController,
        PersistentVolumeController,
        EndpointsController,
        NamespaceController,
        GarbageCollector,
        NodeLifecycleController,
        TaintEvictionController,
        PodGCController,
        ConfigRolloutController,
        HorizontalPodAutoscalerController,
    )
}
