"""Load digests over SWIM in the simulator: relayed broadcasts against direct messages.

Each peer publishes its load digest every 0.3 s. Before, the digest was a gossip broadcast,
relayed by every peer up to the retransmit limit; now it is a direct message, sent once by
its origin to each live peer and never relayed. This measures what that changes, in virtual
time over the real `fnlb.gossip.member` (`GossipProfile.fnlb_default()`), `--peers` peers,
each carrying a share of one hot function over four nodes, for `--seconds` simulated seconds,
at several packet-loss rates and seeds:

- reach p50 / p99: ms from a digest being made to a peer merging it as that origin's newest;
- agree: fraction of samples (every 0.37 s) in which every peer's settled width inputs
  (`ClusterLoad.width_inputs` read one second back, as routing reads them) are identical;
- B/s per peer: all datagram bytes a peer sends (probes, acks, gossip and digests).

Figures are in simulated time, so they do not depend on the machine.

Rerun (from the repository root; a few seconds):

    python bench/load_spread_sim.py
    python -m bench.load_spread_sim --peers 10 --losses 0,0.1 --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `fnlb` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fnlb.cluster.load import ClusterLoad, LocalLoad
from fnlb.cluster.load_digest import GOSSIP_BUDGET_BYTES, decode_digest
from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.sim import NetworkModel, Simulation

T0 = 1_700_000_000.0
PUBLISH_S = 0.3
MODES = ("broadcast", "direct")


@dataclass(frozen=True)
class SpreadRun:
    """What one simulated run shows (tests/bench/test_load_spread_sim.py asserts on it)."""

    reach_ms: list[int]
    """Sorted: ms from a digest being made to a peer merging it as its origin's newest."""
    agree: float
    """Fraction of samples in which every peer's settled width inputs were identical."""
    bytes_per_peer_s: float
    truth_rate: float
    """The hot function's cluster-wide calls/s at the end, from each peer's own figures."""
    rates: dict[str, float]
    """Each peer's view of that rate at the end, from the digests it merged."""
    peers_seen: dict[str, list[str]]
    """The peers each peer holds figures from at the end."""
    agree_at_end: bool
    violations: list[str]
    """The simulator's protocol invariant violations (packet budget, incarnations)."""

    def p(self, q: float) -> float:
        return float(self.reach_ms[int(len(self.reach_ms) * q)])


def simulate(seed: int, loss: float, mode: str, peers: int, seconds: float) -> SpreadRun:
    """`peers` peers publishing digests by `mode` for `seconds` simulated seconds."""
    sim = Simulation(seed, GossipProfile.fnlb_default(), NetworkModel(loss=loss), log=None)
    names = sim.spawn(peers)
    sim.run_for(3.0)
    loads = {n: LocalLoad(epoch=1) for n in names}
    views = {n: ClusterLoad() for n in names}
    reach: list[int] = []
    agree = [0, 0]

    def wall_ms() -> int:
        return round(T0 * 1000 + sim.now * 1000)

    def publish() -> None:
        for i, n in enumerate(names):
            for k in range(3 * (i + 1)):  # 10, 20, ... calls/s of "hot" per peer
                t = sim.now - PUBLISH_S + (k + 1) / (10 * (i + 1))
                loads[n].call_started("hot", f"node{k % 4}", t)
                loads[n].call_finished("hot", f"node{k % 4}", 200, None, 0.01, t)
            data = loads[n].digest(sim.now, GOSSIP_BUDGET_BYTES, stamp_ms=wall_ms())
            views[n].merge(n, data, sim.now)
            delegate = sim.recording(n)
            send = delegate.send_direct if mode == "direct" else delegate.broadcast
            send(b"load", data)
        sim.at(sim.now + PUBLISH_S, publish)

    def deliver() -> None:
        for n in names:
            delegate = sim.recording(n)
            for origin, _key, payload in delegate.received:
                if views[n].merge(origin, payload, sim.now):
                    reach.append(wall_ms() - decode_digest(payload).stamp_ms)
            delegate.received.clear()
        sim.at(sim.now + 0.02, deliver)

    def sample() -> None:
        if sim.now > 8.0:
            cut = wall_ms() - 1000
            agree[1] += 1
            agree[0] += len({views[n].width_inputs("hot", sim.now, cut) for n in names}) == 1
        sim.at(sim.now + 0.37, sample)

    sim.at(sim.now, publish)
    sim.at(sim.now, deliver)
    sim.at(sim.now, sample)
    before = {n: sim.slots[n].member.stats["bytes_sent"] for n in names}
    sim.run_for(seconds)
    sent = sum(sim.slots[n].member.stats["bytes_sent"] - before[n] for n in names)
    cut = wall_ms() - 1000
    return SpreadRun(
        reach_ms=sorted(reach),
        agree=agree[0] / max(1, agree[1]),
        bytes_per_peer_s=sent / peers / seconds,
        truth_rate=sum(loads[n].function_load("hot", sim.now).rate for n in names),
        rates={n: views[n].function_load("hot", sim.now).rate for n in names},
        peers_seen={n: views[n].peers(sim.now) for n in names},
        agree_at_end=len({views[n].width_inputs("hot", sim.now, cut) for n in names}) == 1,
        violations=list(sim.violations),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--losses", default="0,0.05,0.2", help="packet-loss fractions, comma-separated")
    ap.add_argument("--seeds", default="1,2", help="comma-separated")
    args = ap.parse_args(argv)
    losses = [float(x) for x in args.losses.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    print(f"{args.peers} peers, digest every {PUBLISH_S} s, {args.seconds:g} s simulated")
    print("| delivery | loss | seed | reach p50 (ms) | reach p99 (ms) | agree | B/s per peer |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode in MODES:
        for loss in losses:
            for seed in seeds:
                run = simulate(seed, loss, mode, args.peers, args.seconds)
                print(
                    f"| {mode} | {loss:.0%} | {seed} | {run.p(0.5):.0f} | {run.p(0.99):.0f} "
                    f"| {run.agree:.1%} | {run.bytes_per_peer_s:,.0f} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
