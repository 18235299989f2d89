"""The Jobs a CronJob makes, built the same way by its controller and by ``navarch create job --from``."""

from __future__ import annotations

import datetime

from controlplane.api.pb import batch_pb2, meta_pb2

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
"""Annotation on a scheduled Job: the time it was scheduled for (RFC 3339)."""
INSTANTIATE = "cronjob.kubernetes.io/instantiate"
"""Annotation on a Job made by hand from a CronJob ("manual")."""


def scheduled_job_name(cronjob: str, scheduled: datetime.datetime) -> str:
    """``<cronjob>-<minutes since the epoch>``, as Kubernetes names them: one name per scheduled time, so a
    second attempt at the same time finds the first instead of starting a twin."""
    return f"{cronjob}-{int(scheduled.timestamp()) // 60}"


def job_from_cronjob(cj: batch_pb2.CronJob, name: str, annotations: dict[str, str]) -> batch_pb2.Job:
    """A Job from ``cj``'s template: its labels and annotations plus ``annotations``, controlled by ``cj``."""
    job = batch_pb2.Job(api_version="batch/v1", kind="Job")
    job.metadata.name = name
    job.metadata.namespace = cj.metadata.namespace
    job.metadata.labels.update(cj.spec.job_template.metadata.labels)
    job.metadata.annotations.update(cj.spec.job_template.metadata.annotations)
    job.metadata.annotations.update(annotations)
    job.metadata.owner_references.append(
        meta_pb2.OwnerReference(
            api_version="batch/v1",
            kind="CronJob",
            name=cj.metadata.name,
            uid=cj.metadata.uid,
            controller=True,
            block_owner_deletion=True,
        )
    )
    job.spec.CopyFrom(cj.spec.job_template.spec)
    return job
