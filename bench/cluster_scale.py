"""Cluster agreement at scale, in the simulator with real Peers (fnlb.sim.cluster).

For each N: N peers over SWIM (fnlb's default gossip profile), `--nodes` Fn nodes, every peer
serving calls (a hot function at `--hot-rate` calls/s per peer, plus `--rate` calls/s per peer
spread over `--functions` others). It measures, in virtual seconds:

- gossip bytes/s per peer, sent (datagrams and push-pull streams; received is the same on
  average), over a `--window` under load; the share of it that is load digests (up and down
  the load tree, fnlb.cluster.load_tree; before it, sent directly to every peer: issue #11
  defect 7); the busiest peer's bytes/s sent and received (a tree's inner peers forward the
  cluster's sum to up to 8 children); and, below the table, the bytes/s per peer by kind
  (each datagram decoded: SWIM message types, user messages by key prefix, push-pull);
- node change: a node added on one peer, the time until each peer holds it; p50/p99/max over
  peers and `--changes` changes;
- verdict agreement after a heal: 30 % | 70 %, the 70 % cut off from one node (they call it
  offline, the 30 % still see it online), healed after 20 s; the time from the heal until every
  peer has the same checksum and routes nowhere near the node;
- hot function: a new function starts at `--hot-rate` per peer; the time until every peer's
  cluster-wide rate for it is within 10 % of the truth (N x hot-rate); and, 15 s in, the
  largest gap between a peer's cluster figure and the sum of every peer's own figure (what
  gossip adds to the estimator's lag).

Also the CPU seconds each N took (the only machine-dependent figure; the machine is shared).

Rerun (from the repository root):

    python bench/cluster_scale.py                          # N = 10, 20, 50, 100
    python bench/cluster_scale.py --sizes 1000 --nodes 200 --functions 10000 --window 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `fnlb` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fnlb.gossip import codec
from fnlb.gossip.messages import UserBroadcast, UserDirect
from fnlb.sim.calls import Calls
from fnlb.sim.cluster import ClusterSim


@dataclass
class Row:
    n: int
    sent_bps: float
    load_share: float
    max_sent_bps: float
    max_received_bps: float
    change_p50: float
    change_p99: float
    change_max: float
    heal_s: float | None
    hot_s: float | None
    hot_err: float
    gossip_err: float
    cpu_s: float
    kinds: dict[str, float] = field(default_factory=dict)
    """Bytes/s sent per peer by kind, over the traffic window."""


class Tap:
    """Bytes sent by every peer, by kind, while `on`: each datagram decoded and each message
    in it counted under its type (a user message under its key's prefix, e.g. `direct l/`),
    the datagram framing under `framing`, push-pull streams under `push-pull`."""

    def __init__(self, sim: ClusterSim) -> None:
        self.bytes: Counter[str] = Counter()
        self.sent: Counter[Any] = Counter()
        self.received: Counter[Any] = Counter()
        self.on = False
        gossip = sim.gossip
        send_datagram, open_stream = gossip._send_datagram, gossip._open_stream

        def datagram(src: Any, dst: Any, data: bytes) -> None:
            if self.on:
                self.count(data)
                self.sent[src] += len(data)
                self.received[dst] += len(data)
            send_datagram(src, dst, data)

        def stream(slot: Any, req: Any) -> None:
            if self.on:
                self.bytes["push-pull (both ways, request x 2)"] += 2 * len(req.data)
            open_stream(slot, req)

        gossip._send_datagram = datagram  # type: ignore[method-assign]
        gossip._open_stream = stream  # type: ignore[method-assign]

    def count(self, data: bytes) -> None:
        msgs, _skipped = codec.decode_compound(data)
        used = 0
        for m in msgs:
            size = len(codec.encode_message(m))
            used += size
            if isinstance(m, UserDirect | UserBroadcast):
                kind = "direct" if isinstance(m, UserDirect) else "broadcast"
                label = f"{kind} {m.key.split(b'/')[0].decode(errors='replace')}/"
            else:
                label = type(m).__name__
            self.bytes[label] += size
        self.bytes["framing"] += len(data) - used


LOAD_KEYS = ("l/", "u/", "c/", "k/")
"""Key prefixes of load digests: a peer's own to all (before the load tree), up, down, and
the copies of cut sums sent down again (`k/`; not counted before 2026-12-06 evening)."""


def traffic_bytes(sim: ClusterSim) -> int:
    t = sim.gossip.traffic
    return int(t["datagram_bytes"] + t["stream_bytes"])


def progress(n: int, what: str) -> None:
    """Each figure as soon as it is measured (a long run cut short still gives them)."""
    print(f"N={n} {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def measure(n: int, args: argparse.Namespace) -> Row:
    cpu = time.process_time()
    sim = ClusterSim(peers=n, nodes=args.nodes, seed=args.seed + n, hc_interval=3.0)
    sim.run_until_true(lambda: sim.gossip.converged(sim.names), timeout=60)
    progress(n, f"converged at {sim.now:.1f} s")
    tap = Tap(sim)
    load = Calls(sim, args.functions, args.rate, args.seed)
    load.hot["/r/app/hot"] = args.hot_rate
    sim.run_for(10 + args.settle)

    # Traffic under load.
    before, t0 = traffic_bytes(sim), sim.now
    tap.on = True
    sim.run_for(args.window)
    tap.on = False
    kinds = {k: v / n / (sim.now - t0) for k, v in tap.bytes.items()}
    progress(n, f"traffic {traffic_bytes(sim) - before} B in {sim.now - t0:.1f} s: {kinds}")
    sent = (traffic_bytes(sim) - before) / n / (sim.now - t0)
    span = sim.now - t0
    load_bytes = sum(v for k, v in tap.bytes.items() if k.split(" ")[-1] in LOAD_KEYS)
    load_share = load_bytes / max(1.0, n * sent * span)
    max_sent = max(tap.sent.values()) / span
    max_received = max(tap.received.values()) / span

    # Node changes.
    delays: list[float] = []
    for i in range(0 if args.skip_changes else args.changes):
        node = f"10.9.0.{i + 1}:8080"
        if args.live_changes:  # it answers checks: no peer says "offline" on it
            sim.node_up[node] = True
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
    if not delays:  # --skip-changes
        delays = [float("nan")]
    progress(n, f"node change delays p50 {statistics.median(delays):.2f} max {delays[-1]:.2f}")
    p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))]
    heal_s = float("nan") if args.skip_heal else measure_heal(sim)
    nan = float("nan")
    row = Row(n, sent, load_share, max_sent, max_received, statistics.median(delays), p99,
              delays[-1], heal_s, None, nan, nan, 0.0, kinds)  # fmt: skip
    if args.skip_hot:
        row.cpu_s = time.process_time() - cpu
        return row
    return measure_hot(sim, args, n, load, cpu, row)


def measure_heal(sim: ClusterSim) -> float | None:
    """Seconds from a 30 % | 70 % partition's heal to one checksum everywhere (None: > 60)."""
    n = len(sim.names)

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
    progress(n, f"verdicts agree {heal_s} s after the heal")
    for name in majority:
        sim.uncut(name, x)
    sim.run_for(10)
    return heal_s


def measure_hot(
    sim: ClusterSim, args: argparse.Namespace, n: int, load: Calls, cpu: float, row: Row
) -> Row:
    """A new hot function: when does every peer know its cluster rate within 10 %?"""
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
    progress(n, f"hot rate known in {hot_s} s")
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
    row.hot_s = hot_s
    row.hot_err = max(errors) if errors else float("nan")
    row.gossip_err = lag_err
    row.cpu_s = time.process_time() - cpu
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,20,50,100")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="calls/s per peer, spread")
    parser.add_argument("--hot-rate", type=float, default=10.0, help="hot calls/s per peer")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="more seconds of load before the traffic window: past the start's verdicts "
        "(every peer's first verdict on every node, N x nodes broadcasts)",
    )
    parser.add_argument("--changes", type=int, default=3)
    parser.add_argument(
        "--skip-changes", action="store_true", help="no node changes (a large N's CPU)"
    )
    parser.add_argument("--skip-heal", action="store_true", help="no partition and heal")
    parser.add_argument("--skip-hot", action="store_true", help="no new hot function")
    parser.add_argument(
        "--live-changes",
        action="store_true",
        help="the nodes added answer checks (else they are down, and every peer's 'offline' "
        "on each is N broadcasts relayed by every peer: bench/node_down_cost.py)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows.append(measure(n, args))
        r = rows[-1]
        print(f"N={n} done in {r.cpu_s:.0f} CPU s", file=sys.stderr, flush=True)
    print(
        "| N | gossip sent per peer | of it load digests | busiest peer sent / received "
        "| node change p50 / p99 / max "
        "| verdicts agree after heal | hot rate within 10 % everywhere | steady gossip error "
        "| CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        heal = f"{r.heal_s:.1f} s" if r.heal_s is not None else "> 60 s"
        heal = "not run" if heal == "nan s" else heal
        hot = f"{r.hot_s:.1f} s" if r.hot_s is not None else "> 30 s"
        hot = "not run" if args.skip_hot else hot
        print(
            f"| {r.n} | {r.sent_bps / 1000:.1f} KB/s | {r.load_share:.0%} "
            f"| {r.max_sent_bps / 1000:.1f} / {r.max_received_bps / 1000:.1f} KB/s "
            f"| {r.change_p50:.2f} / {r.change_p99:.2f} / {r.change_max:.2f} s "
            f"| {heal} | {hot} | {r.gossip_err:.1%} | {r.cpu_s:.0f} s |"
        )
    print()
    print("Gossip sent per peer by kind (bytes/s):")
    print()
    kinds = sorted(
        {k for r in rows for k in r.kinds}, key=lambda k: -max(r.kinds.get(k, 0) for r in rows)
    )
    print("| kind | " + " | ".join(f"N={r.n}" for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for k in kinds:
        print(f"| {k} | " + " | ".join(f"{r.kinds.get(k, 0):,.0f}" for r in rows) + " |")


if __name__ == "__main__":
    main()
