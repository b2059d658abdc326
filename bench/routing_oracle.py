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
503.

What the partitions know (`--knowing`): `trace`, each function's calls/s over the whole
trace, the burst included (the oracle: it sizes the bursting function's homes for a burst it
has not seen yet); `steady`, every call outside the burst's window (each steady rate exactly,
no foresight of the burst); `warmup`, the calls of the first `--warm-s` seconds, what an
online balancer has seen when the counting starts. Without foresight a partition must *react*
to the burst (`--react-s S`): from S seconds after the burst begins until it ends, the
bursting function's calls go in turn over 2 to 5 nodes, its homes first, then the nodes
with the fewest calls/s by the partition (the tail's last); each width is tried.

Printed: every partition's cold % and busiest node, the best (lowest cold % among those
with the busiest node at most `--busiest` times the mean and no saturated node), how many
of those reach issue 16's 0.85x, the online admission (`fnlb`, a real Peer as in the
landscape) and pooled memory on the same trace.

`--choose-on-seeds 1,2,3,4` runs the search on each seed's trace (rates learnt from each
seed's own trace, so a label, whose protected count is a number of functions, is the same rule
on each) and chooses without hindsight, leave-one-out: for each held-out seed, the
configuration with the lowest mean cold ratio to pooled memory over the other seeds among
those with the busiest node within `--busiest` and no saturated node on every one of them.
Printed: its ratio and busiest node on the held-out seed, the hindsight best there, fnlb's.
Deterministic: same arguments, same table. Rerun (repository root; a few minutes each):

    python -m bench.routing_oracle                                      # bench/routing's default
    python -m bench.routing_oracle --memory-mb 2048 --functions 300 --zipf-s 1.1 --rate 120 \
        --idle-timeout-s 30 --exec-ms 20,20 --burst-rank 0             # issue 16's roomy profile
    python -m bench.routing_oracle --knowing steady                     # no foresight, no reaction
    python -m bench.routing_oracle --knowing warmup --react-s 3         # learnt online (~6 min)
    python -m bench.routing_oracle --knowing warmup --react-s 3 --choose-on-seeds 1,2,3,4
                                                          # chosen without hindsight (~6 min a seed)
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

from bench.routing_landscape import NODES, TARGET, Answer, Fnlb, Outcome, RoundRobin, replay
from bench.routing_workload import (
    WorkloadSpec,
    centred_spec,
    floor_fraction,
    make_trace,
    ranked_names,
)
from fnlb.cluster.view import NodeView
from fnlb.fnsim.model import PoolConfig

BALANCES = ("rate", "count", "count<rate", "rate+tail")
RATE_CAP = 1.25
"""`count<rate`: a node takes no more once its calls/s reach this many equal shares."""
CALL_SHARE = 1.25
"""As fnlb's `WidthPolicy.call_share`: a function over this many node shares is spread."""
KNOWING = ("trace", "steady", "warmup")
"""What the partitions' rates are counted from (module docstring)."""
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


class Reacting(Static):
    """`Static`, but from `start` to `end` (seconds of the trace) the calls of `key` go in
    turn over `spread`: a balancer that spreads the burst once it has seen it."""

    def __init__(
        self,
        nodes: Sequence[str],
        homes: dict[str, list[str]],
        tail: Sequence[str],
        key: str,
        spread: Sequence[str],
        start: float,
        end: float,
    ) -> None:
        super().__init__(nodes, homes, tail)
        self._key = key
        self._spread = list(spread)
        self._start = start
        self._end = end
        self._next = 0

    def choose(self, lb: int, key: str, now: float) -> Sequence[str]:
        order = super().choose(lb, key, now)
        if key != self._key or not self._start <= now < self._end:
            return order
        i = self._next
        self._next = (i + 1) % len(self._spread)
        first = [*self._spread[i:], *self._spread[:i]]
        return [*first, *(n for n in order if n not in first)]


def known_rates(spec: WorkloadSpec, knowing: str, warm_s: float) -> dict[str, float]:
    """Each function's calls/s as `knowing` (`KNOWING`) counts them, by its key."""
    calls = make_trace(spec)
    span = spec.duration_s
    if knowing == "steady":
        end = spec.burst_at_s + spec.burst_s
        calls = [c for c in calls if not spec.burst_at_s <= c.at_s < end]
        span -= min(end, spec.duration_s) - min(spec.burst_at_s, spec.duration_s)
    elif knowing == "warmup":
        calls = [c for c in calls if c.at_s < warm_s]
        span = warm_s
    elif knowing != "trace":
        raise ValueError(f"knowing must be one of {', '.join(KNOWING)}")
    if span <= 0:
        raise ValueError("nothing to count the rates over")
    counts = Counter("/r/bench/" + c.fn for c in calls)
    return {k: n / span for k, n in counts.items()}


def reaction_nodes(
    homes: dict[str, list[str]],
    tail: Sequence[str],
    rates: dict[str, float],
    key: str,
    width: int,
    nodes: Sequence[str],
) -> list[str]:
    """The nodes `key`'s burst goes over: where the partition sends it (its homes, else its
    tail node, else its rendezvous home), then the nodes with the fewest calls/s by the
    partition, the tail's last; `width` of them (more if it has more homes)."""
    view = NodeView(1, dict.fromkeys(nodes, "online"))

    def first(k: str) -> list[str]:
        order = view.candidates(k)
        return homes.get(k) or [next((n for n in order if n in tail), order[0])]

    load = dict.fromkeys(nodes, 0.0)
    for k, r in rates.items():
        hosts = first(k)
        for n in hosts:
            load[n] += r / len(hosts)
    own = first(key)
    others = sorted((n for n in nodes if n not in own), key=lambda n: (n in tail, load[n], n))
    return [*own, *others][: max(width, len(own))]


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


@dataclass(frozen=True, slots=True)
class Workload:
    """One trace and the nodes it is replayed onto, from the command line."""

    spec: WorkloadSpec
    pool: PoolConfig
    """Each of the five nodes."""
    pooled: PoolConfig
    """One node holding all five nodes' memory."""
    after: float
    """The first seconds not counted."""


def workload_arguments(ap: argparse.ArgumentParser) -> None:
    """The trace's options, bench/routing's default workload by default."""
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


def workload_from(ap: argparse.ArgumentParser, args: argparse.Namespace) -> Workload:
    """The workload `workload_arguments` read; a bad one ends the program with a message."""
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
    return Workload(
        spec,
        PoolConfig(memory_mb=args.memory_mb, cold_start_s=0.3, idle_timeout_s=idle),
        PoolConfig(memory_mb=args.memory_mb * len(NODES), cold_start_s=0.3, idle_timeout_s=idle),
        args.warm_s,
    )


def search(w: Workload, rates: dict[str, float]) -> list[tuple[Partition, Outcome]]:
    """Every partition of `search_space` built from `rates`, replayed on `w`'s trace."""
    out = []
    for part in search_space(w.spec.functions, len(NODES)):
        homes, tail = partition(part, rates, NODES)
        out.append((part, replay(Static(NODES, homes, tail), w.spec, w.pool, NODES, w.after)))
    return out


def search_reacting(
    w: Workload, rates: dict[str, float], react_s: float
) -> list[tuple[str, Outcome]]:
    """As `search`, each partition with the burst spread over 2 to 5 nodes (`Reacting`) from
    `react_s` after it begins until it ends."""
    spec = w.spec
    burst = "/r/bench/" + ranked_names(spec)[spec.burst_rank]
    start, end = spec.burst_at_s + react_s, spec.burst_at_s + spec.burst_s
    out = []
    for part in search_space(spec.functions, len(NODES)):
        homes, tail = partition(part, rates, NODES)
        tried: set[tuple[str, ...]] = set()
        for width in range(2, len(NODES) + 1):
            spread = reaction_nodes(homes, tail, rates, burst, width, NODES)
            if tuple(spread) in tried:
                continue
            tried.add(tuple(spread))
            router = Reacting(NODES, homes, tail, burst, spread, start, end)
            label = f"{part.label()}, burst over {len(spread)} nodes"
            out.append((label, replay(router, spec, w.pool, NODES, w.after)))
    return out


@dataclass(frozen=True, slots=True)
class SeedRun:
    """One trace's search, with pooled memory and the online admission on the same trace."""

    pooled: Outcome
    online: Outcome
    results: list[tuple[str, Outcome]]
    """Each configuration's label (a partition, and with a reaction its burst width)."""


def run_seed(w: Workload, knowing: str, react_s: float | None, memory_mb: int) -> SeedRun:
    """`search` (or with `react_s`, `search_reacting`) on `w`, its rates known as `knowing`."""
    spec, after = w.spec, w.after
    pooled = replay(RoundRobin(NODES[:1]), spec, w.pooled, NODES[:1], after)
    online = replay(Fnlb(NODES, memory_mb=memory_mb), spec, w.pool, NODES, after)
    rates = known_rates(spec, knowing, after)
    if react_s is None:
        results = [(part.label(), o) for part, o in search(w, rates)]
    else:
        results = search_reacting(w, rates, react_s)
    return SeedRun(pooled, online, results)


def within(o: Outcome, busiest: float) -> bool:
    """No saturated node and the busiest node at most `busiest` times the mean."""
    return not o.saturated and o.busiest <= busiest


def leave_one_out(
    runs: dict[int, list[tuple[str, Outcome]]], pooled: dict[int, float], busiest: float
) -> dict[int, str | None]:
    """For each held-out seed, the configuration chosen without it: the label with the lowest
    mean cold ratio to pooled memory (`pooled`: its cold %) over the other seeds, among the
    labels `within` `busiest` on every other seed; ties by label. Only labels the held-out
    seed also has are candidates (its outcomes are not read). None: no label qualifies."""
    if len(runs) < 2:
        raise ValueError("leave-one-out needs at least two seeds")
    by_seed = {s: dict(r) for s, r in runs.items()}
    chosen: dict[int, str | None] = {}
    for held in runs:
        others = [s for s in runs if s != held]
        scores: dict[str, float] = {}
        for label in by_seed[held]:
            outs = [(s, by_seed[s].get(label)) for s in others]
            ok = [(s, o) for s, o in outs if o is not None and within(o, busiest)]
            if len(ok) == len(others):
                scores[label] = sum(o.cold / (pooled[s] or 1.0) for s, o in ok) / len(ok)
        chosen[held] = min(scores, key=lambda k: (scores[k], k)) if scores else None
    return chosen


def best_within(results: list[tuple[str, Outcome]], busiest: float) -> tuple[str, Outcome] | None:
    """The lowest cold % `within` `busiest`, picked with hindsight on the trace it is scored on."""
    ok = [(p, o) for p, o in results if within(o, busiest)]
    return min(ok, key=lambda x: (x[1].cold, x[0])) if ok else None


def _cell(o: Outcome | None, ref: float) -> str:
    if o is None:
        return "none"
    sat = ", saturated" if o.saturated else ""
    return f"{o.cold / ref:.2f}x ({o.busiest:.2f}{sat})"


def print_leave_one_out(runs: dict[int, SeedRun], busiest: float) -> None:
    """The markdown table: per held-out seed, the configuration chosen on the other seeds."""
    chosen = leave_one_out(
        {s: r.results for s, r in runs.items()},
        {s: r.pooled.cold for s, r in runs.items()},
        busiest,
    )
    print(
        "| held-out seed | chosen on the other seeds | its ratio (busiest) | "
        "hindsight best | its ratio (busiest) | fnlb (busiest) |"
    )
    print("|---|---|---:|---|---:|---:|")
    cols: list[list[float | None]] = [[], [], []]
    for s, run in runs.items():
        ref = run.pooled.cold or 1.0
        label = chosen[s]
        mine = dict(run.results)[label] if label is not None else None
        best = best_within(run.results, busiest)
        b_label, b = best if best is not None else ("none", None)
        print(
            f"| {s} | {label or 'none'} | {_cell(mine, ref)} | {b_label} | {_cell(b, ref)} "
            f"| {_cell(run.online, ref)} |"
        )
        for col, o in zip(cols, (mine, b, run.online), strict=True):
            col.append(o.cold / ref if o is not None else None)
    means = [_mean(col) for col in cols]
    print(f"| mean | | {means[0]} | | {means[1]} | {means[2]} |")
    picked = [(s, dict(r.results)[c]) for s, r in runs.items() if (c := chosen[s]) is not None]
    ok = [(s, o) for s, o in picked if within(o, busiest)]
    met = sum(1 for s, o in ok if o.cold <= TARGET * (runs[s].pooled.cold or 1.0))
    print(
        f"\nchosen without hindsight: {len(picked)} of {len(runs)} seeds have one; "
        f"{len(ok)} keep the busiest <= {busiest:g}x unsaturated on the held-out seed, "
        f"{met} of those at or under {TARGET:g}x pooled memory"
    )


def _mean(ratios: list[float | None]) -> str:
    known = [r for r in ratios if r is not None]
    if len(known) < len(ratios):
        return f"n/a ({len(ratios) - len(known)} none)"
    return f"{sum(known) / len(known):.2f}x"


def print_search(args: argparse.Namespace, w: Workload, run: SeedRun) -> None:
    """One trace's table: the best configurations, how many reach the target, fnlb's."""
    spec, after, idle = w.spec, w.after, args.idle_timeout_s
    pooled, online, results = run.pooled, run.online, run.results
    floor = 100.0 * floor_fraction(make_trace(spec), idle, after)
    ref = pooled.cold or 1.0
    known = {
        "trace": "knowing the trace's rates",
        "steady": "knowing every rate outside the burst",
        "warmup": f"knowing the rates of the first {after:g} s",
    }[args.knowing]
    react = (
        "" if args.react_s is None else f", the burst spread from {args.react_s:g} s after it began"
    )
    print(
        f"{args.functions} functions, {args.rate:g} calls/s, Zipf {args.zipf_s:g}, "
        f"{args.memory_mb} MB nodes x {len(NODES)}, idle {idle:g} s, executions {args.exec_ms} "
        f"ms, {args.duration_s:g} s trace (first {after:g} s not counted), seed {spec.seed}: "
        f"{len(results)} static partitions {known}{react}"
    )
    print(f"floor {floor:.1f} %, pooled memory {pooled.cold:.1f} %\n")
    print("| partition | cold % | / pooled | busiest / mean | saturated |")
    print("|---|---:|---:|---:|---|")
    ok = [(p, o) for p, o in results if within(o, args.busiest)]
    listed = sorted(results, key=lambda x: x[1].cold)[: args.top]
    listed += [x for x in sorted(ok, key=lambda x: x[1].cold)[: args.top] if x not in listed]
    for p, o in listed:
        print(
            f"| {p} | {o.cold:.1f} | {o.cold / ref:.2f} | {o.busiest:.2f} "
            f"| {'yes' if o.saturated else 'no'} |"
        )
    print()
    if chosen := best_within(results, args.busiest):
        best_p, best = chosen
        print(
            f"best with busiest <= {args.busiest:g}x and no saturated node: {best_p}: "
            f"{best.cold:.1f} % = {best.cold / ref:.2f}x pooled (busiest {best.busiest:.2f}x)"
        )
    else:
        print(f"no partition keeps the busiest node <= {args.busiest:g}x unsaturated")
    met = sum(1 for _p, o in ok if o.cold <= TARGET * ref)
    print(
        f"at or under {TARGET:g}x pooled memory among those: {met} of {len(ok)} "
        f"({len(results)} tried)"
    )
    b_p, b = min(results, key=lambda x: x[1].cold)
    print(f"best of all: {b_p}: {b.cold:.1f} % = {b.cold / ref:.2f}x pooled")
    print(
        f"online admission (fnlb): {online.cold:.1f} % = {online.cold / ref:.2f}x pooled "
        f"(busiest {online.busiest:.2f}x{', saturated' if online.saturated else ''})"
    )


def seeds_from(ap: argparse.ArgumentParser, text: str) -> list[int]:
    """`--choose-on-seeds`' list: at least two distinct seeds."""
    try:
        seeds = [int(x) for x in text.split(",")]
    except ValueError:
        ap.error("--choose-on-seeds takes seeds separated by commas, e.g. 1,2,3,4")
    if len(set(seeds)) < 2 or len(set(seeds)) != len(seeds):
        ap.error("--choose-on-seeds needs at least two distinct seeds")
    return seeds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    workload_arguments(ap)
    ap.add_argument("--busiest", type=float, default=1.3, help="most busiest/mean for 'best'")
    ap.add_argument("--top", type=int, default=12, help="partitions listed, best first")
    ap.add_argument(
        "--knowing", choices=KNOWING, default="trace", help="what the rates are counted from"
    )
    ap.add_argument(
        "--react-s",
        type=float,
        default=None,
        help="spread the burst over 2-5 nodes from this many s after it begins (default: not)",
    )
    ap.add_argument(
        "--choose-on-seeds",
        default=None,
        help="seeds, e.g. 1,2,3,4: each held out, the configuration chosen on the others "
        "(replaces --seed)",
    )
    args = ap.parse_args(argv)
    w = workload_from(ap, args)
    if args.knowing == "warmup" and args.warm_s <= 0:
        ap.error("--knowing warmup counts the rates over --warm-s: it must be over 0")
    if args.react_s is not None and args.react_s < 0:
        ap.error("--react-s must be >= 0")
    if args.choose_on_seeds is None:
        print_search(args, w, run_seed(w, args.knowing, args.react_s, args.memory_mb))
        return 0
    runs: dict[int, SeedRun] = {}
    for seed in seeds_from(ap, args.choose_on_seeds):
        ws = replace(w, spec=replace(w.spec, seed=seed))
        runs[seed] = run = run_seed(ws, args.knowing, args.react_s, args.memory_mb)
        best = best_within(run.results, args.busiest)
        print(
            f"seed {seed}: pooled memory {run.pooled.cold:.1f} %, {len(run.results)} tried, "
            f"{sum(within(o, args.busiest) for _p, o in run.results)} within "
            f"{args.busiest:g}x, hindsight best {best[0] if best else 'none'}",
            flush=True,
        )
    print()
    print_leave_one_out(runs, args.busiest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
