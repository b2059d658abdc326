"""Load digests over SWIM in the simulator: real Peers, direct messages against relayed ones.

Each peer is a real `fnlb.peer.core.Peer`, the gossip delegate of a real `fnlb.gossip.member`
(`GossipProfile.fnlb_default()`) in the virtual-time simulator, ticked every 0.1 s as its
pump does in production; it makes its load digest every 0.3 s (`DIGEST_S`) and sends it
directly, once, to each live peer (`take_direct`). The "broadcast" rows hand the same
digests to gossip as relayed broadcasts instead (the delivery used before), to show what
direct delivery saves. `--peers` peers each carry a share of one hot function over four
nodes, for `--seconds` simulated seconds, at several packet-loss rates and seeds:

- reach p50 / p99: ms from a digest being made to a peer holding it as that origin's newest
  (sampled every 20 ms);
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
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `fnlb` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.sim import NetworkModel, Simulation
from fnlb.peer.core import DIGEST_S, Peer
from fnlb.routing.attempt import Attempt
from fnlb.routing.policies import RendezvousPolicy

T0 = 1_700_000_000.0
LOAD_S = 0.3
TICK_S = 0.1
MODES = ("broadcast", "direct")


class Relayed:
    """A Peer's own delegate, with what it sends directly handed to gossip as broadcasts
    (relayed up to the retransmit limit): the "broadcast" rows. Nothing else changes."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    def take_broadcasts(self) -> list[tuple[bytes, bytes]]:
        return [*self.peer.take_broadcasts(), *self.peer.take_direct()]

    def take_direct(self) -> list[tuple[bytes, bytes]]:
        return []

    def notify_broadcast(self, origin: str, key: bytes, payload: bytes) -> bool:
        return self.peer.notify_broadcast(origin, key, payload)

    def local_state(self, join: bool) -> bytes:
        return self.peer.local_state(join)

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        self.peer.merge_remote_state(data, join)


@dataclass(frozen=True)
class SpreadRun:
    """What one simulated run shows (bench/tests/test_load_spread_sim.py asserts on it)."""

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
    """`peers` Peers publishing digests by `mode` for `seconds` simulated seconds."""
    sim = Simulation(seed, GossipProfile.fnlb_default(), NetworkModel(loss=loss), log=None)

    def wall_ms() -> int:
        return round(T0 * 1000 + sim.now * 1000)

    def wall_s() -> float:
        return T0 + sim.now

    names = [f"m{i}" for i in range(peers)]
    fleet = {n: Peer(n, routing=RendezvousPolicy(), clock_ms=wall_ms, epoch_ms=1) for n in names}
    for n in names:
        sim.add(n, fleet[n] if mode == "direct" else Relayed(fleet[n]))
    sim.start(names[0])
    for i, n in enumerate(names[1:], start=1):
        sim.at(i * 0.01, functools.partial(sim.start, n, names[: min(i, 3)]))
    sim.run_for(3.0)
    reach: list[int] = []
    agree = [0, 0]
    held: dict[tuple[str, str], int] = {}

    def members() -> None:
        for n in names:
            fleet[n].members_changed(m.name for m in sim.slots[n].member.members())
        sim.at(sim.now + 1.0, members)

    def calls() -> None:
        for i, n in enumerate(names):
            for k in range(3 * (i + 1)):  # 10, 20, ... calls/s of "hot" per peer
                t = wall_s() - LOAD_S + (k + 1) / (10 * (i + 1))
                node = f"node{k % 4}"
                fleet[n].attempt_started("hot", node, t)
                fleet[n].attempt_finished(Attempt("hot", node, "/hot", 200, t, None, None, 0.01))
        sim.at(sim.now + LOAD_S, calls)

    def tick() -> None:
        for n in names:
            fleet[n].tick(wall_s())
        sim.at(sim.now + TICK_S, tick)

    def watch() -> None:
        for q in names:
            for origin in names:
                stamp = fleet[q].load.newest_stamp_ms(origin)
                if origin != q and stamp is not None and stamp > held.get((q, origin), 0):
                    held[q, origin] = stamp
                    reach.append(wall_ms() - stamp)
        sim.at(sim.now + 0.02, watch)

    def inputs(cut: int) -> set[object]:
        return {fleet[n].load.width_inputs("hot", wall_s(), cut) for n in names}

    def sample() -> None:
        if sim.now > 8.0:
            agree[1] += 1
            agree[0] += len(inputs(wall_ms() - 1000)) == 1
        sim.at(sim.now + 0.37, sample)

    for job in (members, calls, tick, watch, sample):
        sim.at(sim.now, job)
    before = {n: sim.slots[n].member.stats["bytes_sent"] for n in names}
    sim.run_for(seconds)
    sent = sum(sim.slots[n].member.stats["bytes_sent"] - before[n] for n in names)
    now = wall_s()
    return SpreadRun(
        reach_ms=sorted(reach),
        agree=agree[0] / max(1, agree[1]),
        bytes_per_peer_s=sent / peers / seconds,
        truth_rate=sum(fleet[n].local.function_load("hot", now).rate for n in names),
        rates={n: fleet[n].load.function_load("hot", now).rate for n in names},
        peers_seen={n: fleet[n].load.peers(now) for n in names},
        agree_at_end=len(inputs(wall_ms() - 1000)) == 1,
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
    print(f"{args.peers} peers, digest every {DIGEST_S} s, {args.seconds:g} s simulated")
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
