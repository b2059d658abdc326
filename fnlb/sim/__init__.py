"""fnlb.sim: seeded, virtual-time simulators that run real `Peer`s (fnlb.peer.core), used by
the tests and by bench/ alike (neither imports the other)."""

T0_MS = 1_800_000_000_000
"""The wall clock (ms) at virtual time 0 of every simulator here."""
