"""The bound on placement: the best static partition that knows the trace, in virtual time.

Issue 16 asks fnlb's cold fraction to reach 0.85x pooled memory's (one node holding all the
nodes' memory, Fn's own LRU). Placement cannot change a node's eviction, only which
functions compete for which node's memory. So the question under the target is how far any
partition can go: this bench searches static partitions with full knowledge of the trace's
rates (the count of each function's calls over the whole trace, the burst included) and
replays each through the landscape's model (`bench.routing_landscape.replay`: fnsim's pool
model, 128 MB containers, 300 ms cold start, Fn's LRU of idle containers, three balancers).

A partition is:

- `tail`: how many nodes take the *tail* (the first `tail` nodes of a fixed rendezvous order;
  0: no tail, every function placed or hashed over all the nodes);
- `protected`: how many of the hottest functions (by the trace's own rate) get a home of
  their own; the rest are the tail (hashed over the tail's nodes), or with no tail hashed
  over all the nodes by rendezvous;
- `balance`: how the protected functions are spread, hottest first onto the node with the
  least so far: `rate` (calls/s: the busiest node stays near the mean), `count` (functions:
  each keeps about one warm container, so memory is shared evenly), `count<rate` (by count
  among the nodes whose calls/s stay under 1.25 equal shares, else by rate), or `rate+tail` (by rate
  over every node, the tail's nodes starting with the tail's rate: what the online
  admission does, the tail's nodes also holding hot functions);
- `spread`: whether a function with more calls than 1.25 equal node shares gets as many
  homes as keep each under one, its calls taken in turn (fnlb's call-share widths). Without
  it the hottest function alone can make its node the busiest by far (Zipf 1.5: 40 % of
  the calls).

A call goes to its function's home (or its tail node), the rest of its rendezvous order on a
503. Printed: every partition's cold % and busiest node, the best (lowest cold % among those
with the busiest node at most `--busiest` times the mean and no saturated node), the online
admission (`fnlb`, a real Peer as in the landscape) and pooled memory on the same trace.
Deterministic: same arguments, same table. Rerun (repository root; a few minutes each):

    python -m bench.routing_oracle                                      # bench/routing's default
    python -m bench.routing_oracle --memory-mb 2048 --functions 300 --zipf-s 1.1 --rate 120 \
        --idle-timeout-s 30 --exec-ms 20,20 --burst-rank 0             # issue 16's roomy profile
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from math import ceil
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.routing_landscape import NODES, Answer, Fnlb, Outcome, RoundRobin, replay
from bench.routing_workload import WorkloadSpec, centred_spec, floor_fraction, make_trace
from fnlb.cluster.view import NodeView
from fnlb.fnsim.model import PoolConfig

BALANCES = ("rate", "count", "count<rate", "rate+tail")
RATE_CAP = 1.25
"""`count<rate`: a node takes no more once its calls/s reach this many equal shares."""
CALL_SHARE = 1.25
"""As fnlb's `WidthPolicy.call_share`: a function over this many node shares is spread."""
TAIL_KEY = "\x00oracle-tail"
"""The fixed key whose rendezvous order names the tail's nodes."""


@dataclass(frozen=True, slots=True)
class Partition:
    """One static partition (see the module docstring)."""

    tail: int
    protected: int
    balance: str
    spread: bool = False

    def label(self) -> str:
        spread = ", spread" if self.spread else ""
        return f"tail {self.tail}, protected {self.protected}, by {self.balance}{spread}"


class Static:
    """A balancer that routes by a fixed partition: the home, else the tail's nodes (in the
    key's own rendezvous order), then the rest of the rendezvous order for 503s."""

    def __init__(
        self, nodes: Sequence[str], homes: dict[str, list[str]], tail: Sequence[str]
    ) -> None:
        self._view = NodeView(1, dict.fromkeys(nodes, "online"))
        self._homes = homes
        self._tail = set(tail)
        self._orders: dict[str, list[str]] = {}
        self._turn: dict[str, int] = {}

    def choose(self, lb: int, key: str, now: float) -> Sequence[str]:
        order = self._orders.get(key)
        if order is None:
            rest = list(self._view.candidates(key))
            first = self._homes.get(key) or [n for n in rest if n in self._tail]
            order = self._orders[key] = [*first, *(n for n in rest if n not in first)]
        w = len(self._homes.get(key, ()))
        if w > 1:  # spread over its w homes in turn (each balancer alike: the calls' order)
            i = self._turn[key] = (self._turn.get(key, -1) + 1) % w
            return [*order[i:w], *order[:i], *order[w:]]
        return order

    def started(self, lb: int, node: str, key: str, now: float) -> None:
        return None

    def finished(self, lb: int, node: str, key: str, answer: Answer) -> None:
        return None


def trace_rates(spec: WorkloadSpec) -> dict[str, float]:
    """Each function's calls/s over the whole trace (the oracle's knowledge), by its key."""
    counts = Counter("/r/bench/" + c.fn for c in make_trace(spec))
    return {k: n / spec.duration_s for k, n in counts.items()}


def partition(
    part: Partition, rates: dict[str, float], nodes: Sequence[str]
) -> tuple[dict[str, list[str]], tuple[str, ...]]:
    """Homes of the `part.protected` hottest functions and the tail's nodes. `part.spread`:
    a function over `CALL_SHARE` equal node shares of the calls gets as many homes as keep
    each under one (as fnlb's widths spread it), its calls taken in turn."""
    view = NodeView(1, dict.fromkeys(nodes, "online"))
    tail = tuple(view.candidates(TAIL_KEY)[: part.tail])
    ranked = sorted(rates, key=lambda k: (-rates[k], k))
    protected = ranked[: part.protected]
    tail_rate = sum(rates[k] for k in ranked[part.protected :]) if tail else 0.0
    if part.balance == "rate+tail" or not tail:
        hosts = list(nodes)
    else:
        hosts = [n for n in nodes if n not in tail]
    load = dict.fromkeys(hosts, 0.0)
    for n in tail:
        if n in load:
            load[n] = tail_rate / len(tail)
    share = CALL_SHARE * sum(rates.values()) / len(nodes)
    homes: dict[str, list[str]] = {}
    count = dict.fromkeys(hosts, 0)
    cap = RATE_CAP * sum(rates.values()) / len(nodes)
    for key in protected:
        w = min(len(hosts), ceil(rates[key] / share - 1e-9)) if part.spread else 1
        w = max(w, 1)
        part_rate = rates[key] / w
        order = view.candidates(key)
        if part.balance == "count":
            chosen = sorted(hosts, key=lambda n: (count[n], order.index(n)))[:w]
        elif part.balance == "count<rate":
            # fewest functions among the nodes under the rate cap, then the least calls/s
            chosen = sorted(
                hosts,
                key=lambda n: (load[n] + part_rate > cap, count[n], load[n], order.index(n)),
            )[:w]
        else:
            chosen = sorted(hosts, key=lambda n: (load[n], order.index(n)))[:w]
        homes[key] = chosen
        for n in chosen:
            load[n] += part_rate
            count[n] += 1
    return homes, tail


def search_space(functions: int, nodes: int) -> list[Partition]:
    """Tails of 0-2 nodes, protected sets from 0 to every function in 1-5 % steps."""
    step = max(1, functions // 100)
    sizes = sorted({*range(0, min(functions, 40) + 1, step), *range(0, functions + 1, 5 * step)})
    out = [Partition(0, k, b, s) for k in sizes for b in ("rate", "count") for s in (False, True)]
    for t in range(1, min(2, nodes - 2) + 1):
        out += [
            Partition(t, k, b, s)
            for k in sizes
            if k < functions
            for b in BALANCES
            for s in (False, True)
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--functions", type=int, default=200)
    ap.add_argument("--rate", type=float, default=40.0, help="mean calls/s")
    ap.add_argument("--zipf-s", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--memory-mb", type=int, default=1024, help="per node (1024: 8)")
    ap.add_argument("--idle-timeout-s", type=float, default=15.0)
    ap.add_argument("--exec-ms", default="10,100", help="low,high: log-uniform per function")
    ap.add_argument("--burst-rank", type=int, default=1, help="0 = the hottest bursts")
    ap.add_argument("--duration-s", type=float, default=120.0, help="as bench/routing: 120")
    ap.add_argument("--warm-s", type=float, default=30.0, help="first s not counted (30)")
    ap.add_argument("--busiest", type=float, default=1.3, help="most busiest/mean for 'best'")
    ap.add_argument("--top", type=int, default=12, help="partitions listed, best first")
    args = ap.parse_args(argv)
    try:
        low, high = (float(x) for x in args.exec_ms.split(","))
    except ValueError:
        ap.error("--exec-ms takes low,high in ms")
    if args.memory_mb < 128 or args.functions < 1 or args.rate <= 0:
        ap.error("--memory-mb must hold a 128 MB container; --functions, --rate positive")
    if not 0 <= args.warm_s < args.duration_s:
        ap.error("--warm-s must be >= 0 and under --duration-s")
    spec = replace(
        centred_spec(
            args.functions, args.rate, args.zipf_s, args.duration_s, args.warm_s, args.seed
        ),
        exec_ms=(low, high),
        burst_rank=min(args.burst_rank, args.functions - 1),
    )
    idle = args.idle_timeout_s
    pool = PoolConfig(memory_mb=args.memory_mb, cold_start_s=0.3, idle_timeout_s=idle)
    one = PoolConfig(memory_mb=args.memory_mb * len(NODES), cold_start_s=0.3, idle_timeout_s=idle)
    after = args.warm_s
    pooled = replay(RoundRobin(NODES[:1]), spec, one, NODES[:1], after)
    online = replay(Fnlb(NODES, memory_mb=args.memory_mb), spec, pool, NODES, after)
    rates = trace_rates(spec)
    floor = 100.0 * floor_fraction(make_trace(spec), idle, after)
    results: list[tuple[Partition, Outcome]] = []
    for part in search_space(args.functions, len(NODES)):
        homes, tail = partition(part, rates, NODES)
        results.append((part, replay(Static(NODES, homes, tail), spec, pool, NODES, after)))
    ref = pooled.cold or 1.0
    print(
        f"{args.functions} functions, {args.rate:g} calls/s, Zipf {args.zipf_s:g}, "
        f"{args.memory_mb} MB nodes x {len(NODES)}, idle {idle:g} s, executions {args.exec_ms} "
        f"ms, {args.duration_s:g} s trace (first {after:g} s not counted), seed {args.seed}: "
        f"{len(results)} static partitions knowing the trace's rates"
    )
    print(f"floor {floor:.1f} %, pooled memory {pooled.cold:.1f} %\n")
    print("| partition | cold % | / pooled | busiest / mean | saturated |")
    print("|---|---:|---:|---:|---|")
    ok = [(p, o) for p, o in results if not o.saturated and o.busiest <= args.busiest]
    listed = sorted(results, key=lambda x: x[1].cold)[: args.top]
    listed += [x for x in sorted(ok, key=lambda x: x[1].cold)[: args.top] if x not in listed]
    for p, o in listed:
        print(
            f"| {p.label()} | {o.cold:.1f} | {o.cold / ref:.2f} | {o.busiest:.2f} "
            f"| {'yes' if o.saturated else 'no'} |"
        )
    print()
    if ok:
        best_p, best = min(ok, key=lambda x: x[1].cold)
        print(
            f"best with busiest <= {args.busiest:g}x and no saturated node: {best_p.label()}: "
            f"{best.cold:.1f} % = {best.cold / ref:.2f}x pooled (busiest {best.busiest:.2f}x)"
        )
    else:
        print(f"no partition keeps the busiest node <= {args.busiest:g}x unsaturated")
    b_p, b = min(results, key=lambda x: x[1].cold)
    print(f"best of all: {b_p.label()}: {b.cold:.1f} % = {b.cold / ref:.2f}x pooled")
    print(
        f"online admission (fnlb): {online.cold:.1f} % = {online.cold / ref:.2f}x pooled "
        f"(busiest {online.busiest:.2f}x{', saturated' if online.saturated else ''})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
