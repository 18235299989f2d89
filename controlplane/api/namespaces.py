"""The namespaces every cluster has, named once."""

from __future__ import annotations

DEFAULT = "default"
SYSTEM = "navarch-system"
"""The control plane's own objects: leader-election Leases, bootstrap-token Secrets, system-* priorities."""
NODE_LEASE = "navarch-node-lease"
"""One Lease per node, renewed by its agent (Kubernetes' kube-node-lease)."""
PROTECTED = (DEFAULT, SYSTEM, NODE_LEASE)
"""Made at API server start and never deleted."""
