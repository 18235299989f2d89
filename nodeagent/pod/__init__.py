"""The agent's pod runtime: one ``PodWorker`` per pod drives ``ContainerRunner``s through ordered hooks.

::

    Agent._on_pod ──> worker.PodWorker (phase machine) ──> volumes.PodVolumes (sandbox, volumes)
                              │
                              └──> container.ContainerRunner, per container (start/adopt, wait, back-off)
                                        └──> hooks, in order: environment, identity, limits, logs, probes,
                                             lifecycle ──> process.ShimProcesses (fork server, shims)
                      status.pod_status (pure) <── worker ──> status.StatusPublisher (one write per change)
"""
