"""The history checker (fnlb.sim.history) over many seeds: does agreement hold?

For each N it checks one random history per seed (writes on random peers, crashes and
restarts with and without state dirs, fresh peers with stale `-nodes`, symmetric and one-way
partitions, loss 0-40 %, clock skew up to +-25 s; fnlb.sim.history says exactly what) and
prints a table: histories, failures, acknowledged writes, writes excused (every holder lost
its state), and how long after the last fault every peer agreed (median and max, virtual
seconds; the check allows two push-pull intervals, 30 s). A failing seed prints its minimal
history, which replays exactly.

Figures are virtual time (machine independent); only the CPU column depends on the machine.

Rerun (from the repository root):

    python bench/agreement.py                          # 200 seeds at N=5, 100 at 20, 3 at 100
    python bench/agreement.py --sizes 5 --seeds 500
    python bench/agreement.py --sizes 100 --seeds 3    # ~1-2 CPU minutes per history
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `fnlb` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fnlb.sim.history import Outcome, check, plan, shrink

DEFAULT_SEEDS = {5: 200, 20: 100, 100: 3}


def run(n: int, seeds: int, first: int) -> tuple[list[Outcome], float]:
    started = time.process_time()
    events, span = (30, 150.0) if n < 100 else (15, 60.0)
    out = []
    for seed in range(first, first + seeds):
        outcome = check(plan(seed, n, events=events, span_s=span))
        if not outcome.ok:
            small = shrink(outcome.plan) if n <= 20 else outcome.plan
            print(f"FAILED N={n} seed {seed}:", *check(small).failures[:5], sep="\n  ")
            print(small.describe())
        out.append(outcome)
    return out, time.process_time() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5,20,100", help="peer counts, comma-separated")
    parser.add_argument("--seeds", type=int, default=0, help="histories per size (0: default)")
    parser.add_argument("--first", type=int, default=1000, help="first seed")
    args = parser.parse_args(argv)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        outcomes, cpu = run(n, args.seeds or DEFAULT_SEEDS.get(n, 10), args.first)
        agreed = [o.agreed_after_s for o in outcomes if o.agreed_after_s is not None]
        rows.append(
            (
                n,
                len(outcomes),
                sum(not o.ok for o in outcomes),
                sum(o.acked for o in outcomes),
                sum(o.excused for o in outcomes),
                statistics.median(agreed) if agreed else float("nan"),
                max(agreed) if agreed else float("nan"),
                cpu,
            )
        )
    print("| N | histories | failed | acked writes | excused | agreed after (median / max) | CPU |")
    print("|---|---|---|---|---|---|---|")
    for n, h, f, a, e, med, top, cpu in rows:
        print(f"| {n} | {h} | {f} | {a} | {e} | {med:.1f} s / {top:.1f} s | {cpu:.0f} s |")


if __name__ == "__main__":
    main()
