"""navarch-apiserver: the only component that talks to etcd.

``main`` parses flags and serves; ``service`` is the gRPC Api servicer;
``registry`` is the one generic code path for every verb and kind;
``strategy`` holds what differs between kinds; ``watchcache`` serves List and
Watch from memory.
"""
