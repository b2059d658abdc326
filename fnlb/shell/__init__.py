"""fnlb.shell: the asyncio shells around the sans-I/O `Peer`, which only move inputs in and
outputs out: health checks, the cluster's gossip, state dir and write acks, and the pump."""
