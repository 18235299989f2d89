"""All etcd access lives in this package, so that the etcd client can be swapped in one place.

``EtcdClient`` (connection, failover, TLS) -> ``Store`` (objects under
``/registry``, guarded writes) and ``EtcdWatch`` (one watch stream with
progress requests). Only the API server imports this package.
"""

from controlplane.storage.client import EtcdClient, EtcdConfig
from controlplane.storage.store import Store, StoredList
from controlplane.storage.watch import EtcdWatch, WatchBatch, WatchEvent

__all__ = ["EtcdClient", "EtcdConfig", "EtcdWatch", "Store", "StoredList", "WatchBatch", "WatchEvent"]
