"""fnlb.sim: seeded, virtual-time simulators that run real `Peer`s (fnlb.peer.core), used by
the tests and by bench/ alike (neither imports the other)."""
