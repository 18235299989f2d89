"""The one privilege-dropping helper (nodeagent/runas.py) used for exec probes, preStop hooks and
``navarch exec``: the pod's environment reaches the command but never the root helper's own environment or
its command line (plausible bugs, the issue's findings: the helper started as root with the pod's
``LD_PRELOAD``; Secrets from the environment visible in ``/proc/PID/cmdline``)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from nodeagent.cgroups import CgroupDriver, Limits
from nodeagent.identity import RunAs
from nodeagent.runas import command_as

POD_ENV = {"LD_PRELOAD": "/tmp/evil.so", "PYTHONPATH": "/tmp/evil", "SECRET": "s3cr3t-value", "PATH": "/bin:/usr/bin"}


def test_the_helper_gets_no_pod_environment_and_no_secret_on_its_command_line() -> None:
    launch = command_as(RunAs(4321, 4321), ["sh", "-c", "echo $SECRET"], POD_ENV)
    try:
        if os.geteuid() == 4321:
            pytest.skip("the test runs as 4321 itself")
        assert set(launch.env) == {"PATH"}, launch.env
        assert not any("s3cr3t" in a or "evil" in a for a in launch.argv), launch.argv
        (fd,) = launch.pass_fds
        assert json.loads(os.pread(fd, 1 << 16, 0)) == {"env": POD_ENV, "cgroups": []}
        assert "-I" in launch.argv, "the helper must ignore PYTHON* variables"
    finally:
        launch.close()


def test_the_agents_own_user_needs_no_helper() -> None:
    me = RunAs(os.geteuid(), os.getegid())
    launch = command_as(me, ["true"], {"A": "1"})
    assert launch.argv == ["true"] and launch.env == {"A": "1"} and launch.pass_fds == ()
    assert command_as(None, ["true"], {}).argv == ["true"]


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_the_command_runs_as_the_user_with_the_pod_environment() -> None:
    launch = command_as(RunAs(4321, 4322, (4323,)), ["sh", "-c", 'echo "$(id -u) $(id -g) $(id -G) $SECRET"'], POD_ENV)
    try:
        out = subprocess.run(launch.argv, env=launch.env, pass_fds=launch.pass_fds, capture_output=True, text=True)
    finally:
        launch.close()
    assert out.returncode == 0, out.stderr
    uid, gid, *rest = out.stdout.split()
    assert (uid, gid) == ("4321", "4322") and "4323" in rest and rest[-1] == "s3cr3t-value"
    missing = command_as(RunAs(4321, 4321), ["/no/such/command"], {})
    try:
        gone = subprocess.run(missing.argv, env=missing.env, pass_fds=missing.pass_fds, capture_output=True)
    finally:
        missing.close()
    assert gone.returncode == 127


def test_the_command_joins_the_containers_cgroup() -> None:
    """Probes, hooks and exec run inside the container's cgroup (its limits and accounting), not the agent's
    (plausible bug: the helper dropped privileges but left the command in the agent's cgroup)."""
    driver = CgroupDriver.detect(f"privdrop-{os.getpid()}")
    if driver is None:
        pytest.skip("no writable cgroup hierarchy here")
    procs = driver.create("pod-uid", "main", 0, Limits())
    try:
        launch = command_as(None, ["cat", "/proc/self/cgroup"], {"PATH": "/bin:/usr/bin"}, procs)
        try:
            out = subprocess.run(launch.argv, env=launch.env, pass_fds=launch.pass_fds, capture_output=True, text=True)
        finally:
            launch.close()
        assert out.returncode == 0, out.stderr
        assert f"/{driver.prefix}/pod-uid/main.0" in out.stdout, out.stdout
    finally:
        driver.remove_instance("pod-uid", "main", 0)
        driver.remove_all()
