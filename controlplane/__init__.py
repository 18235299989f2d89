"""Navarch's control plane: API objects, etcd storage, API server, client machinery, scheduler, controllers."""
