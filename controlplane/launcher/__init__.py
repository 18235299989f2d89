"""Starting local processes for tests and ``navarch up``: today the etcd launcher."""
