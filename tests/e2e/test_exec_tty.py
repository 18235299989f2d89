"""``navarch exec -it`` end to end under a real terminal: the test gives the CLI a pty of its own, types into
it and reads the screen. The shell on the node runs on a pty it controls: it sees the window size and a
resize, Ctrl-C interrupts its foreground job (not the session), and the exit code comes back (plausible
bugs: no terminal on the node, so no prompt and no job control; the size never sent, or sent once; Ctrl-C
killing the whole exec; the exit code lost)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import signal
import struct
import subprocess
import termios
import time

from controlplane.api.pb import core_pb2
from controlplane.client.client import ApiClient
from tests.cli.conftest import NAVARCH
from tests.e2e.conftest import AgentProcess, pod_manifest, wait_pod


def _running(p: core_pb2.Pod) -> bool:
    return p.status.phase == "Running" and all(s.state.HasField("running") for s in p.status.container_statuses)


def _resize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Screen:
    """What the CLI wrote to its terminal, read from the pty's master side."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.text = ""

    def until(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        start = len(self.text)
        while True:
            found = regex.search(self.text, start)
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"never saw {pattern!r}; the screen ends with {self.text[-400:]!r}")
            import select

            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    self.text += os.read(self.master, 65536).decode(errors="replace")
                except OSError:
                    raise AssertionError(f"terminal closed before {pattern!r}: {self.text[-400:]!r}") from None

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())


async def test_exec_it_runs_an_interactive_shell_on_a_terminal(
    cli_env: dict[str, str], client: ApiClient, agent: AgentProcess, namespace: str
) -> None:
    await client.create(pod_manifest("term", namespace, agent.node, ["sleep", "3600"]))
    await wait_pod(client, namespace, "term", _running)
    master, slave = os.openpty()
    _resize(master, 30, 100)
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [NAVARCH, "exec", "-it", "term", "-n", namespace, "--", "sh"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**cli_env, "PS1": "READY$ "},
    )
    os.close(slave)
    screen = Screen(master)
    try:
        # The node's shell is interactive (a terminal): it prompts. Each step waits for its own output and
        # the prompt after it (computed values, so an echo of what was typed cannot match).
        await asyncio.to_thread(screen.until, r"[#$] $")
        await asyncio.to_thread(screen.type, "PS1='at'-'node> '\r")
        await asyncio.to_thread(screen.until, r"\nat-node> $")
        await asyncio.to_thread(screen.type, "stty size\r")
        await asyncio.to_thread(screen.until, r"\n30 100\r\nat-node> $")

        _resize(master, 40, 120)  # the user's window changes: the CLI hears SIGWINCH and tells the node
        proc.send_signal(signal.SIGWINCH)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(screen.type, "stty size\r")
        await asyncio.to_thread(screen.until, r"\n40 120\r\nat-node> $")

        await asyncio.to_thread(screen.type, "sleep 100; echo after-sleep\r")
        await asyncio.sleep(1.0)
        began = time.monotonic()
        await asyncio.to_thread(screen.type, "\x03")  # Ctrl-C, typed: the node's terminal interrupts the job
        await asyncio.to_thread(screen.type, "echo alive-$((2+3))\r")
        await asyncio.to_thread(screen.until, r"alive-5\r\nat-node> $", 10)
        assert time.monotonic() - began < 10, "the sleep was not interrupted"
        assert not re.search(r"(?m)^after-sleep", screen.text), f"the list went on after Ctrl-C: {screen.text!r}"
        await asyncio.to_thread(screen.type, "tty; exit 7\r")
        await asyncio.to_thread(screen.until, r"\n/dev/pts/\d+")
        code = await asyncio.to_thread(proc.wait, 20)
        assert code == 7
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
