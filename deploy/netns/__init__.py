"""Hosts on one machine: network namespaces joined by a bridge, for multi-host tests without VMs.

::

    netns nv-<tag>-sw:  bridge br0 ── veth s1 ─┐  ── veth s2 ─┐  ...
    netns nv-<tag>-h1:  eth0 10.200.0.11/24 ───┘  (lo up)     │
    netns nv-<tag>-h2:  eth0 10.200.0.12/24 ──────────────────┘

Everything lives in namespaces this module creates (the bridge too), so the machine's own network is never
touched. Daemons run inside a host's namespace (``ip netns exec``); a host can be killed (its processes),
cut off (its link on the bridge down) and healed. Needs root (CAP_NET_ADMIN).
"""

from deploy.netns.hosts import Host, HostNetwork, netns_available

__all__ = ["Host", "HostNetwork", "netns_available"]
