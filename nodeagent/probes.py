"""Liveness, readiness and startup probes: exec, httpGet and tcpSocket, with Kubernetes' semantics.

A ``ProbeRunner`` runs one probe: after ``initialDelaySeconds``, every ``periodSeconds`` with a
``timeoutSeconds`` budget; the result flips to success after ``successThreshold`` consecutive successes and
to failure after ``failureThreshold`` consecutive failures. It reports every flip through a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

from controlplane.api.pb import core_pb2
from nodeagent.identity import RunAs
from nodeagent.runas import command_as

log = logging.getLogger(__name__)


def _port(value: object, ports: dict[str, int]) -> int:
    kind = value.WhichOneof("kind")  # type: ignore[attr-defined]
    if kind == "number_value":
        return int(value.number_value)  # type: ignore[attr-defined]
    text = value.string_value  # type: ignore[attr-defined]
    return int(text) if text.isdigit() else ports[text]


async def check(
    probe: core_pb2.Probe,
    *,
    host: str,
    ports: dict[str, int],
    env: dict[str, str],
    cwd: str,
    run_as: RunAs | None = None,
    cgroups: Sequence[str] = (),
) -> tuple[bool, str]:
    """Run a probe once: (success, message). An exec probe runs as ``run_as`` (the container's user), in
    ``cgroups`` (the container's)."""
    timeout = probe.timeout_seconds or 1
    try:
        if probe.HasField("exec"):
            launch = command_as(run_as, list(probe.exec.command), env, cgroups)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *launch.argv,
                    env=launch.env,
                    cwd=cwd,
                    pass_fds=launch.pass_fds,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            finally:
                launch.close()
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                return False, f"command timed out after {timeout}s"
            ok = proc.returncode == 0
            return ok, "" if ok else f"exit code {proc.returncode}: {out.decode(errors='replace').strip()[:200]}"
        if probe.HasField("tcp_socket"):
            port = _port(probe.tcp_socket.port, ports)
            target = probe.tcp_socket.host or host
            _, writer = await asyncio.wait_for(asyncio.open_connection(target, port), timeout)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True, ""
        if probe.HasField("http_get"):
            hg = probe.http_get
            port = _port(hg.port, ports)
            url = f"{(hg.scheme or 'HTTP').lower()}://{hg.host or host}:{port}{hg.path or '/'}"
            headers = {h.name: h.value for h in hg.http_headers}
            return await asyncio.to_thread(_http_get, url, headers, timeout)
    except (OSError, TimeoutError, KeyError, ValueError) as err:
        return False, f"{type(err).__name__}: {err}"
    return False, "the probe has no handler"


def _http_get(url: str, headers: dict[str, str], timeout: float) -> tuple[bool, str]:
    request = urllib.request.Request(url, headers={"User-Agent": "navarch-probe", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            ok = 200 <= resp.status < 400
            return ok, "" if ok else f"HTTP probe failed with statuscode: {resp.status}"
    except urllib.error.HTTPError as err:
        return False, f"HTTP probe failed with statuscode: {err.code}"
    except (urllib.error.URLError, OSError) as err:
        return False, f"Get {url}: {err}"


class ProbeRunner:
    """Runs one probe forever and reports when its result changes."""

    def __init__(
        self,
        name: str,
        probe: core_pb2.Probe,
        on_change: Callable[[bool, str], None],
        *,
        host: str,
        ports: dict[str, int],
        env: dict[str, str],
        cwd: str,
        initial: bool,
        run_as: RunAs | None = None,
        cgroups: Sequence[str] = (),
        fail_before_success: bool = False,
    ) -> None:
        self.name = name
        self.probe = probe
        self.on_change = on_change
        self.host = host
        self.ports = ports
        self.env = env
        self.cwd = cwd
        self.run_as = run_as
        self.cgroups = list(cgroups)
        self.result = initial
        self.fail_before_success = fail_before_success
        """Startup probes: report failureThreshold failures even though the result was never success."""
        self._successes = 0
        self._failures = 0

    async def run(self) -> None:
        """Probe until cancelled."""
        p = self.probe
        await asyncio.sleep(p.initial_delay_seconds)
        while True:
            ok, message = await check(
                p,
                host=self.host,
                ports=self.ports,
                env=self.env,
                cwd=self.cwd,
                run_as=self.run_as,
                cgroups=self.cgroups,
            )
            if ok:
                self._successes += 1
                self._failures = 0
                if not self.result and self._successes >= (p.success_threshold or 1):
                    self.result = True
                    self.on_change(True, "")
            else:
                self._failures += 1
                self._successes = 0
                threshold_reached = self._failures >= (p.failure_threshold or 3)
                if threshold_reached and (self.result or self.fail_before_success):
                    self.result = False
                    self._failures = 0
                    self.on_change(False, message)
            await asyncio.sleep(p.period_seconds or 10)
