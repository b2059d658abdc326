"""Cluster agreement at scale, in the simulator with real Peers (fnlb.sim.cluster).

For each N: N peers over SWIM (fnlb's default gossip profile), `--nodes` Fn nodes, every peer
serving calls (a hot function at `--hot-rate` calls/s per peer, plus `--rate` calls/s per peer
spread over `--functions` others). It measures, in virtual seconds:

- gossip bytes/s per peer, sent (datagrams and push-pull streams; received is the same on
  average), over a `--window` under load, and the share of it that is load digests sent
  directly to every peer (issue #11 defect 7: O(N) per peer);
- node change: a node added on one peer, the time until each peer holds it; p50/p99/max over
  peers and `--changes` changes;
- verdict agreement after a heal: 30 % | 70 %, the 70 % cut off from one node (they call it
  offline, the 30 % still see it online), healed after 20 s; the time from the heal until every
  peer has the same checksum and routes nowhere near the node;
- hot function: a new function starts at `--hot-rate` per peer; the time until every peer's
  cluster-wide rate for it is within 10 % of the truth (N x hot-rate): the rate estimator's
  own time constant (3 s, fnlb.cluster.load) alone takes 6.9 s to get there; and, 15 s in,
  the largest gap between a peer's cluster figure and the sum of every peer's own figure
  (what gossip adds to the estimator's lag).

Also the CPU seconds each N took (the only machine-dependent figure; the machine is shared).

Rerun (from the repository root):

    python bench/cluster_scale.py                          # N = 10, 20, 50, 100
    python bench/cluster_scale.py --sizes 1000 --window 5  # N = 1,000 (hours of CPU: see docs)
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `fnlb` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fnlb.routing.attempt import Attempt
from fnlb.sim.cluster import ClusterSim

LOAD_TICK_S = 0.1


@dataclass
class Row:
    n: int
    sent_bps: float
    direct_share: float
    change_p50: float
    change_p99: float
    change_max: float
    heal_s: float | None
    hot_s: float | None
    hot_err: float
    gossip_err: float
    cpu_s: float


class Load:
    """Calls on every live peer, every LOAD_TICK_S: fractional rates carried over."""

    def __init__(self, sim: ClusterSim, functions: int, rate: float, seed: int) -> None:
        self.sim = sim
        self.functions = [f"/r/app/f{i}" for i in range(functions)]
        self.rate = rate
        self.hot: dict[str, float] = {}
        self.rng = random.Random(seed)
        self.owed: dict[tuple[str, str], float] = {}
        sim.gossip.at(sim.now + LOAD_TICK_S, self._tick)

    def _call(self, name: str, key: str, now: float) -> None:
        peer = self.sim.peers[name].peer
        nodes = peer.candidates(key, key)
        if not nodes:
            return
        peer.attempt_started(key, nodes[0], now)
        peer.attempt_finished(Attempt(key, nodes[0], key, 200, now, 0.0, None, 0.01, now))

    def _tick(self) -> None:
        sim = self.sim
        for name, p in sim.peers.items():
            if not p.up:
                continue
            now = sim.peer_ms(name) / 1000
            for key, rate in [*self.hot.items(), ("", self.rate)]:
                owed = self.owed.get((name, key), 0.0) + rate * LOAD_TICK_S
                calls = int(owed)
                self.owed[(name, key)] = owed - calls
                for _ in range(calls):
                    self._call(name, key or self.rng.choice(self.functions), now)
        sim.gossip.at(sim.now + LOAD_TICK_S, self._tick)


def traffic_bytes(sim: ClusterSim) -> int:
    t = sim.gossip.traffic
    return int(t["datagram_bytes"] + t["stream_bytes"])


def direct_sent(sim: ClusterSim) -> int:
    return sum(s.member.stats.get("direct_sent", 0) for s in sim.gossip.slots.values())


def measure(n: int, args: argparse.Namespace) -> Row:
    cpu = time.process_time()
    sim = ClusterSim(peers=n, nodes=args.nodes, seed=args.seed + n, hc_interval=3.0)
    sim.run_until_true(lambda: sim.gossip.converged(sim.names), timeout=60)
    load = Load(sim, args.functions, args.rate, args.seed)
    load.hot["/r/app/hot"] = args.hot_rate
    sim.run_for(10)

    # Traffic under load.
    before, direct_before, t0 = traffic_bytes(sim), direct_sent(sim), sim.now
    sim.run_for(args.window)
    sent = (traffic_bytes(sim) - before) / n / (sim.now - t0)
    directs = direct_sent(sim) - direct_before
    # A direct digest datagram is at most a packet; count what they carried by sampling.
    direct_share = min(1.0, directs * args.digest_bytes / max(1, n * sent * (sim.now - t0)))

    # Node changes.
    delays: list[float] = []
    for i in range(args.changes):
        node = f"10.9.0.{i + 1}:8080"
        writer = sim.names[(7 * i) % n]
        sim.peer(writer).put_node(node, sim.peer_ms(writer))
        start, seen = sim.now, {writer: 0.0}

        def arrived(node: str = node, start: float = start, seen: dict[str, float] = seen) -> bool:
            for name in sim.names:
                if name not in seen and node in sim.peers[name].peer.state.nodes:
                    seen[name] = sim.now - start
            return len(seen) == n

        sim.run_until_true(arrived, timeout=30, step=0.01)
        delays += [seen.get(name, 30.0) for name in sim.names if name != writer]
        sim.run_for(2)
    delays.sort()
    p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))]

    # Verdict agreement after a heal.
    x = sim.node_names[0]
    minority = sim.names[: max(1, (3 * n) // 10)]
    majority = sim.names[len(minority) :]
    sim.partition([minority, majority])
    for name in majority:
        sim.cut(name, x)
    sim.run_for(20)
    sim.heal()
    healed = sim.now

    def agreed() -> bool:
        sums = {p.peer.state.checksum() for p in sim.peers.values()}
        return len(sums) == 1 and set(sim.states(x).values()) == {"offline"}

    heal_s = sim.now - healed if sim.run_until_true(agreed, timeout=60) else None
    for name in majority:
        sim.uncut(name, x)
    sim.run_for(10)

    # A new hot function: when does every peer know its cluster rate within 10 %?
    truth = n * args.hot_rate
    load.hot["/r/app/hot2"] = args.hot_rate
    began = sim.now
    errors: list[float] = []

    def known() -> bool:
        errors.clear()
        for name, p in sim.peers.items():
            rate = p.peer.load.function_load("/r/app/hot2", sim.peer_ms(name) / 1000).rate
            errors.append(abs(rate - truth) / truth)
        return max(errors) <= 0.10

    hot_s = sim.now - began if sim.run_until_true(known, timeout=30, step=0.1) else None
    # What gossip adds to the estimator's own lag: each peer's cluster figure against the sum
    # of every peer's own figure (what a perfect aggregator would say at that moment).
    sim.run_for(max(0.0, began + 15 - sim.now))
    local = sum(
        p.peer.local.function_load("/r/app/hot2", sim.peer_ms(name) / 1000).rate
        for name, p in sim.peers.items()
    )
    lag_err = max(
        abs(p.peer.load.function_load("/r/app/hot2", sim.peer_ms(name) / 1000).rate - local) / local
        for name, p in sim.peers.items()
    )
    return Row(
        n,
        sent,
        direct_share,
        statistics.median(delays),
        p99,
        delays[-1],
        heal_s,
        hot_s,
        max(errors) if errors else float("nan"),
        lag_err,
        time.process_time() - cpu,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,20,50,100")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="calls/s per peer, spread")
    parser.add_argument("--hot-rate", type=float, default=10.0, help="hot calls/s per peer")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--changes", type=int, default=3)
    parser.add_argument("--digest-bytes", type=int, default=600, help="for the direct share")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows.append(measure(n, args))
        r = rows[-1]
        print(f"N={n} done in {r.cpu_s:.0f} CPU s", file=sys.stderr, flush=True)
    print(
        "| N | gossip sent per peer | of it direct digests | node change p50 / p99 / max "
        "| verdicts agree after heal | hot rate within 10 % everywhere | steady gossip error "
        "| CPU |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        heal = f"{r.heal_s:.1f} s" if r.heal_s is not None else "> 60 s"
        hot = f"{r.hot_s:.1f} s" if r.hot_s is not None else "> 30 s"
        print(
            f"| {r.n} | {r.sent_bps / 1000:.1f} KB/s | ~{r.direct_share:.0%} "
            f"| {r.change_p50:.2f} / {r.change_p99:.2f} / {r.change_max:.2f} s "
            f"| {heal} | {hot} | {r.gossip_err:.1%} | {r.cpu_s:.0f} s |"
        )


if __name__ == "__main__":
    main()
