"""``python -m nodeagent.runas UID GID GROUPS -- COMMAND...``: drop to a user, then exec the command.

The agent runs ``navarch exec`` commands as the container's user through this helper rather than with
``subprocess``'s ``user=``/``group=``: those force a plain ``fork`` of the agent, and forking a process that
runs gRPC's threads can crash the child before it reaches ``exec``. This process is single-threaded.
A command that cannot be run exits like a shell: 127 not found, 126 not executable.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    """Switch to the user and exec; returns only on failure."""
    if len(argv) < 5 or argv[3] != "--":
        sys.stderr.write("usage: python -m nodeagent.runas UID GID GROUPS -- COMMAND...\n")
        return 2
    uid, gid, groups, command = int(argv[0]), int(argv[1]), argv[2], argv[4:]
    os.setgroups([int(g) for g in groups.split(",") if g])
    os.setgid(gid)
    os.setuid(uid)
    try:
        os.execvp(command[0], command)
    except OSError as err:
        sys.stderr.write(f"{command[0]}: {err.strerror or err}\n")
        return 127 if isinstance(err, FileNotFoundError) else 126
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
