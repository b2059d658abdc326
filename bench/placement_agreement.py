"""How long a restarted peer places differently from the others, in the routing simulator.

Issue 16 asks that every peer make the same placement decisions. Each placement keeps to the
one before it, so a peer that restarts under load (no scores, no placement of before) must
come to hold the same "before" as the others (docs/routing.md, "After a restart"). This runs
the scenario of `test_a_peer_restarted_under_load_places_as_the_others_within_a_bound`
(fnlb.sim.routing: 3 peers, 5 nodes of 2 GiB, 200 functions Zipf 1.1 at 60 calls/s, 10 %
loss on gossip's datagrams, push-pull every 30 s), restarts one peer 95 s in, and counts,
per 30 s window after the restart, the ticks (one a second) at which the restarted peer's
homes differ from those of a peer that ran throughout.

Deterministic (virtual time). Rerun (repository root; about 15 s a seed):

    python -m bench.placement_agreement
    python -m bench.placement_agreement --seeds 1,2,3 --seconds 330
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fnlb.fnsim.model import PoolConfig
from fnlb.sim.routing import RoutingSim, zipf_workload

WINDOW_S = 30
RESTART_AT_S = 95.0


def differing_ticks(seed: int, seconds: int) -> list[tuple[int, int]]:
    """(ticks whose homes differed, ticks) for each 30 s window after the restart."""
    sim = RoutingSim(
        nodes=5, peers=3, seed=seed, loss=0.1, pool=PoolConfig(memory_mb=2048, idle_timeout_s=30)
    )
    work = zipf_workload(200, 60.0, 0.02, s=1.1)
    sim.run(RESTART_AT_S, work)
    sim.restart(2)
    counts = [[0, 0] for _ in range(-(-seconds // WINDOW_S))]
    for second in range(1, seconds + 1):
        sim.run(RESTART_AT_S + second, work)
        window = counts[(second - 1) // WINDOW_S]
        window[1] += 1
        if sim.peers[0].peer.control.homes != sim.peers[2].peer.control.homes:
            window[0] += 1
    return [(d, n) for d, n in counts]


def table(seeds: list[int], seconds: int) -> str:
    rows = {seed: differing_ticks(seed, seconds) for seed in seeds}
    windows = len(next(iter(rows.values())))
    head = " | ".join(f"{w * WINDOW_S}-{min(seconds, (w + 1) * WINDOW_S)}" for w in range(windows))
    out = [
        f"| seed | {head} |",
        "|---:|" + "---:|" * windows,
    ]
    for seed, counts in rows.items():
        out.append(f"| {seed} | " + " | ".join(f"{d}/{n}" for d, n in counts) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated simulator seeds")
    ap.add_argument("--seconds", type=int, default=330, help="how long after the restart")
    args = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        ap.error(f"--seeds: not a list of integers: {args.seeds!r}")
    if not seeds or args.seconds < 1:
        ap.error("need at least one seed and --seconds of 1 or more")
    print(
        "ticks at which the restarted peer's homes differed from another peer's, per window "
        "of seconds after the restart"
    )
    print(table(seeds, args.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
