"""What one Fn node going down costs each peer in gossip, by N (simulator, virtual time).

Every peer checks every node and broadcasts its own "offline" when the node stops
answering: N broadcasts, each relayed by every peer up to the retransmit limit, so per peer
N x limit messages, once per node that goes down. (A first "online" is not broadcast, so a
cluster's start costs nothing of the kind: docs/cluster.md, "A cluster's start is flat".)

For each N: N peers and `--nodes` Fn nodes, 30 quiet seconds after membership converges,
then the bytes each peer sends over 20 quiet seconds and over the 20 seconds after one node
goes down; prints the difference per peer and the time until every peer calls the node
offline. Only the CPU depends on the machine.

Rerun (from the repository root):

    python bench/node_down_cost.py                  # N = 25, 50, 100, 200
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `fnlb` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fnlb.sim.cluster import ClusterSim

WINDOW_S = 20.0


def measure(n: int, nodes: int, seed: int) -> tuple[float, float, float]:
    """(quiet bytes per peer, extra bytes per peer for the node down, seconds to offline)."""
    sim = ClusterSim(peers=n, nodes=nodes, seed=seed, hc_interval=3.0)
    sim.run_until_true(lambda: sim.gossip.converged(sim.names), timeout=60)
    sim.run_for(30)

    def sent() -> int:
        t = sim.gossip.traffic
        return int(t["datagram_bytes"] + t["stream_bytes"])

    start = sent()
    sim.run_for(WINDOW_S)
    quiet = sent() - start
    dead = sim.node_names[0]
    sim.node_down(dead)
    began = sim.now
    sim.run_until_true(lambda: set(sim.states(dead).values()) == {"offline"}, WINDOW_S)
    took = sim.now - began
    sim.run_for(max(0.0, WINDOW_S - took))
    down = sent() - start - quiet
    return quiet / n, (down - quiet) / n, took


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="25,50,100,200")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print("| N | sent per peer, 20 quiet s | more for one node down | offline everywhere |")
    print("|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        quiet, extra, took = measure(n, args.nodes, args.seed)
        print(f"| {n} | {quiet / 1000:.1f} KB | {extra / 1000:.1f} KB | {took:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
