"""The README's shell blocks, each claimed by whoever runs it, so that every command the README shows is run.

Every fenced ``sh`` block in README.md is preceded by a marker comment naming its role::

    <!-- readme: setup -->
    ```sh
    ...
    ```

Roles and who runs them:

- ``setup``: ``.ci/run``, as written, in a fresh clone with a fresh virtual environment and ``HOME``;
- ``tour``: ``.ci/run``, after ``setup``, in the same clone;
- ``tests``: ``.ci/run``, last, in the same clone;
- ``cli`` and ``api``: ``tests/e2e/test_readme_commands.py`` against a running cluster;
- ``apiserver``: ``tests/e2e/test_readme_commands.py``, with the example addresses replaced by loopback ones.

A block without a marker, or with a role not listed here, is an error (``check``): a command nobody runs
cannot stay in the README. Standard library only: ``.ci/run`` calls this before any virtual environment
exists.

Usage: ``python3 tools/readme_blocks.py check [README]`` or ``python3 tools/readme_blocks.py script ROLE
[README]`` (prints the role's blocks as one script).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROLES = ("setup", "tour", "tests", "cli", "api", "apiserver")
README = Path(__file__).resolve().parent.parent / "README.md"

_MARKER = re.compile(r"^<!--\s*readme:\s*([\w-]+)\s*-->\s*$")
_FENCE = re.compile(r"^```(\w*)\s*$")


class ReadmeError(ValueError):
    """The README's blocks are not all claimed (or a role has no block)."""


@dataclass(frozen=True)
class Block:
    """One fenced shell block of the README."""

    role: str
    """Who runs it (one of ``ROLES``)."""
    line: int
    """The 1-based line of its opening fence."""
    text: str
    """Its contents, as written."""

    def commands(self) -> list[str]:
        """Its commands: one per line, backslash continuations joined, comment-only and blank lines dropped."""
        out: list[str] = []
        pending = ""
        for raw in self.text.splitlines():
            if pending:
                pending += " " + raw.strip()
            elif raw.strip() and not raw.lstrip().startswith("#"):
                pending = raw.strip()
            else:
                continue
            if pending.endswith("\\"):
                pending = pending[:-1].rstrip()
                continue
            out.append(pending)
            pending = ""
        if pending:
            out.append(pending)
        return out


def blocks(text: str) -> list[Block]:
    """Every ``sh`` block of a README with its role; raises ``ReadmeError`` for an unclaimed one."""
    found: list[Block] = []
    problems: list[str] = []
    lines = text.splitlines()
    role: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line)
        fence = _FENCE.match(line)
        if marker:
            role = marker.group(1)
        elif fence:
            start = i
            i += 1
            body: list[str] = []
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            if fence.group(1) in ("sh", "bash", "shell", "console"):
                if role is None:
                    problems.append(f"line {start + 1}: a shell block without a <!-- readme: ROLE --> marker")
                elif role not in ROLES:
                    problems.append(f"line {start + 1}: unknown role {role!r} (known: {', '.join(ROLES)})")
                else:
                    found.append(Block(role, start + 1, "\n".join(body) + "\n"))
            role = None
        elif line.strip():
            role = None if not line.startswith("<!--") else role
        i += 1
    if problems:
        raise ReadmeError("\n".join(problems))
    return found


def script(text: str, role: str) -> str:
    """The blocks of one role, in order, as one shell script."""
    chosen = [b for b in blocks(text) if b.role == role]
    if not chosen:
        raise ReadmeError(f"the README has no block for role {role!r}")
    return "".join(f"# README.md line {b.line}\n{b.text}" for b in chosen)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("check", "script") or (argv[0] == "script" and len(argv) < 2):
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    try:
        if argv[0] == "check":
            path = Path(argv[1]) if len(argv) > 1 else README
            claimed = blocks(path.read_text())
            missing = [r for r in ("setup", "tests") if r not in {b.role for b in claimed}]
            if missing:
                raise ReadmeError(f"the README has no block for {', '.join(missing)}")
            print(f"{path}: {len(claimed)} shell blocks, each claimed")
        else:
            path = Path(argv[2]) if len(argv) > 2 else README
            sys.stdout.write(script(path.read_text(), argv[1]))
    except (OSError, ReadmeError) as err:
        print(f"readme_blocks: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
