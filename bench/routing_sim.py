"""Routing quality in virtual time: docs/routing.md's simulator tables A, B and C, regenerated.

Each row runs `fnlb/sim/routing.py`'s `RoutingSim` (3 fnlb peers gossiping with delay
and loss, 10 modelled Fn nodes, cold start 300 ms, idle timeout 30 s, 503 after 2 s without a
container) for 60 s of virtual time per seed and prints the mean of the seeds: the share of
calls that waited for a container start, the mean and p99 of that wait, 503s and failed calls.

- A. memory-tight: 1 GiB nodes, 40 functions, Zipf(1.1) rates, 300 calls/s of 50 ms, one 10x
  for 15 s; seeds 1, 2.
- B. memory to spare: 2 GiB nodes, 100 functions, otherwise as A; seeds 1, 2.
- C. one function bursting past a node: 1 GiB nodes, one function at 30 calls/s of 100 ms,
  10x from 20 s to 40 s, and 20 functions at 2 calls/s; seeds 2, 3, 4.

Deterministic: the same code gives the same table on any machine. Rerun (repository root,
about 30 seconds on one core):

    python -m bench.routing_sim
    python -m bench.routing_sim --tables C --seconds 20     # a quick look
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fnlb.fnsim.model import PoolConfig
from fnlb.routing.load_router import RouterPolicy
from fnlb.routing.widths import WidthPolicy
from fnlb.sim.routing import RoutingSim, Workload, zipf_workload

Policies = tuple[WidthPolicy, RouterPolicy]
Variant = tuple[str, Callable[[int], Policies], bool]
"""(name, policies by node slots, whether the feed places homes: all but --routing=rendezvous)"""


def burst(t: float) -> dict[str, tuple[float, float]]:
    out = {"hot": (300.0 if 20.0 <= t < 40.0 else 30.0, 0.1)}
    out.update({f"bg{i}": (2.0, 0.05) for i in range(20)})
    return out


def _variant(width: dict[str, int], router: dict[str, object]) -> Callable[[int], Policies]:
    def make(slots: int) -> Policies:
        return (
            WidthPolicy(slots_per_node=slots, **width),
            RouterPolicy(slots_per_node=slots, **router),  # type: ignore[arg-type]
        )

    return make


VARIANTS: list[Variant] = [
    (
        "plain rendezvous (`--routing=rendezvous`)",
        _variant({"max_width": 1}, {"load_floor": 10**9}),
        False,
    ),
    ("placed homes + bounded load only (width 1)", _variant({"max_width": 1}, {}), True),
    ("hot set + least", _variant({}, {"choice": "least"}), True),
    ("hot set + p2c (default)", _variant({}, {}), True),
    ("least loaded over all nodes", _variant({"min_width": 10}, {"min_width": 10}), True),
]

BURST_3 = (3, 10.0, 30.0, 45.0)
TABLES: dict[str, tuple[str, int, Workload, Sequence[int]]] = {
    "A": ("memory-tight", 1024, zipf_workload(40, 300.0, 0.05, burst=BURST_3), (1, 2)),
    "B": ("memory to spare", 2048, zipf_workload(100, 300.0, 0.05, burst=BURST_3), (1, 2)),
    "C": ("one function bursting past a node", 1024, burst, (2, 3, 4)),
}


def row(
    memory_mb: int, work: Workload, seeds: Sequence[int], variant: Variant, seconds: float
) -> str:
    slots = memory_mb // 128
    sums = {
        "cold_pct": 0.0,
        "wait_mean_ms": 0.0,
        "wait_p99_ms": 0.0,
        "busy_503": 0.0,
        "failed": 0.0,
    }
    for seed in seeds:
        width, router = variant[1](slots)
        sim = RoutingSim(
            nodes=10, peers=3, seed=seed, width_policy=width, router_policy=router,
            pool=PoolConfig(memory_mb=memory_mb, max_wait_s=2.0), placed=variant[2],
        )  # fmt: skip
        sim.run(seconds, work)
        summary = sim.record.summary()
        for k in sums:
            sums[k] += summary[k] / len(seeds)
    return (
        f"| {variant[0]} | {sums['cold_pct']:.1f} | {sums['wait_mean_ms']:.0f} | "
        f"{sums['wait_p99_ms']:.0f} | {sums['busy_503']:.0f} | {sums['failed']:.0f} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.routing_sim", description=__doc__)
    p.add_argument("--tables", default="ABC", help="which tables (ABC)")
    p.add_argument("--seconds", type=float, default=60.0, help="virtual seconds per run (60)")
    args = p.parse_args(argv)
    unknown = set(args.tables) - set(TABLES)
    if unknown:
        p.error(f"unknown table {''.join(sorted(unknown))}; known: A, B, C")
    for name in args.tables:
        title, memory_mb, work, seeds = TABLES[name]
        print(f"\n**{name}. {title}** ({memory_mb} MB nodes; seeds {', '.join(map(str, seeds))})\n")
        print("| routing | cold % | wait mean ms | wait p99 ms | 503s | failed |")
        print("|---|---:|---:|---:|---:|---:|")
        for variant in VARIANTS:
            print(row(memory_mb, work, seeds, variant, args.seconds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
