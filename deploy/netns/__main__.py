"""``python -m deploy.netns up N | down TAG | cut TAG HOST | heal TAG HOST``: hosts by hand, for exploring.

``up`` prints the tag and each host's namespace and address, and leaves them in place; run commands in a
host with ``ip netns exec nv-TAG-h1 ...``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from deploy.netns.hosts import Host, HostNetwork, netns_available


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.netns", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="create N hosts")
    up.add_argument("count", type=int)
    up.add_argument("--prefix", default="10.200.0")
    down = sub.add_parser("down", help="remove the hosts of a tag")
    down.add_argument("tag")
    for name in ("cut", "heal"):
        p = sub.add_parser(name, help=f"{name} one host's link")
        p.add_argument("tag")
        p.add_argument("host")
    opts = parser.parse_args()
    reason = netns_available()
    if reason:
        print(f"netns: {reason}", file=sys.stderr)
        return 2
    if opts.command == "up":
        net = HostNetwork(opts.count, prefix=opts.prefix).create()
        print(f"tag {net.tag}")
        for h in net.hosts:
            print(f"{h.name}  netns {h.netns}  ip {h.ip}")
        return 0
    if opts.command == "down":
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout.split()
        for ns in names:
            if ns.startswith(f"nv-{opts.tag}-"):
                subprocess.run(["ip", "netns", "delete", ns], check=False)
        return 0
    switch = f"nv-{opts.tag}-sw"
    port = "s" + opts.host.lstrip("h")
    state = "down" if opts.command == "cut" else "up"
    _ = Host  # the port naming follows Host.switch_port
    return subprocess.run(["ip", "-n", switch, "link", "set", port, state], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
