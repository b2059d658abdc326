"""The call trace bench/routing replays, and the figures it reads from what came back.

Pure: no sockets, no clock. One seeded trace is replayed unchanged against every routing
configuration, so the configurations differ only in where the calls went.

Shape (Azure Functions trace, Shahrad et al., ATC'20, as summarised in the routing
reference): `functions` functions whose mean rates follow Zipf(`zipf_s`) over their rank,
summing to `total_rate` calls/s; each function's execution time drawn once, log-uniform in
`exec_ms` (10-100 ms: "short executions"); arrivals of each function a Poisson process; one
function (the one of rank `burst_rank`) runs `burst_factor` times its rate for `burst_s`
seconds starting at `burst_at_s`. Function names are shuffled against their rank, so heat
says nothing about a name's hash.

The **floor** is the share of calls (after the warm-up) whose function was not called in the
previous `idle_timeout_s` seconds anywhere: an Fn node has destroyed any container such a
call could have used, so it is cold under every routing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What the trace looks like; every field is a knob of `python -m bench.routing`."""

    functions: int = 200
    total_rate: float = 80.0
    """Mean calls/s over all functions, outside the burst."""
    zipf_s: float = 1.1
    exec_ms: tuple[float, float] = (10.0, 100.0)
    duration_s: float = 120.0
    burst_rank: int = 1
    """Rank (0 = hottest) of the function that bursts."""
    burst_factor: float = 10.0
    burst_at_s: float = 70.0
    burst_s: float = 15.0
    seed: int = 1

    def check(self) -> None:
        """Raise ValueError naming the knob that cannot work."""
        if self.functions < 1:
            raise ValueError("functions must be at least 1")
        if not 0 < self.total_rate < 1e6:
            raise ValueError("total_rate must be a positive number of calls/s")
        if not 0 < self.exec_ms[0] <= self.exec_ms[1]:
            raise ValueError("exec_ms must be low,high with 0 < low <= high")
        if not 0 <= self.burst_rank < self.functions:
            raise ValueError("burst_rank must name one of the functions (0-based rank)")
        if self.duration_s <= 0 or self.burst_s < 0 or self.burst_factor < 1:
            raise ValueError("duration_s > 0, burst_s >= 0 and burst_factor >= 1 needed")


def centred_spec(
    functions: int, rate: float, zipf_s: float, duration_s: float, warm_s: float, seed: int
) -> WorkloadSpec:
    """The benches' trace: the burst (15 s, or a quarter of the counted part if shorter) in
    the middle of the part after `warm_s`, which is what they count."""
    counted = duration_s - warm_s
    burst_s = min(15.0, counted / 4)
    return WorkloadSpec(
        functions=functions,
        total_rate=rate,
        zipf_s=zipf_s,
        duration_s=duration_s,
        burst_at_s=warm_s + (counted - burst_s) / 2,
        burst_s=burst_s,
        seed=seed,
    )


@dataclass(frozen=True, slots=True)
class Call:
    """One call of the trace: when (seconds from the start), which function, how long it runs."""

    at_s: float
    fn: str
    exec_ms: int

    @property
    def path(self) -> str:
        """The request path: Fn's route form; the query only tells fnsim how long to run."""
        return f"/r/bench/{self.fn}?ms={self.exec_ms}"


def zipf_rates(functions: int, total_rate: float, s: float) -> list[float]:
    """Rates by rank (0 = hottest), proportional to 1 / (rank + 1) ** s, summing to total."""
    weights = [1.0 / (k + 1) ** s for k in range(functions)]
    norm = sum(weights)
    return [total_rate * w / norm for w in weights]


def _ranked_names(spec: WorkloadSpec, rng: random.Random) -> list[str]:
    names = [f"f{k:03d}" for k in range(spec.functions)]
    rng.shuffle(names)  # names[rank]: the hottest function is not f000
    return names


def ranked_names(spec: WorkloadSpec) -> list[str]:
    """The functions' names by rank (0 = hottest), as `make_trace` names them: the burst's
    is `ranked_names(spec)[spec.burst_rank]`."""
    spec.check()
    return _ranked_names(spec, random.Random(spec.seed))


def make_trace(spec: WorkloadSpec) -> list[Call]:
    """The calls of `spec`, in time order; the same spec always gives the same list."""
    spec.check()
    rng = random.Random(spec.seed)
    rates = zipf_rates(spec.functions, spec.total_rate, spec.zipf_s)
    names = _ranked_names(spec, rng)
    low, high = math.log(spec.exec_ms[0]), math.log(spec.exec_ms[1])
    execs = [round(math.exp(rng.uniform(low, high))) for _ in range(spec.functions)]
    burst_end = spec.burst_at_s + spec.burst_s
    calls: list[Call] = []
    for rank, rate in enumerate(rates):
        bursting = rank == spec.burst_rank
        t = 0.0
        while True:
            inside = bursting and spec.burst_at_s <= t < burst_end
            step = rng.expovariate(rate * spec.burst_factor if inside else rate)
            if bursting and t < spec.burst_at_s <= t + step:
                # The rate changes at the burst's start: a Poisson process restarts there.
                t = spec.burst_at_s
                step = rng.expovariate(rate * spec.burst_factor)
            elif inside and t + step >= burst_end:
                t = burst_end
                step = rng.expovariate(rate)
            t += step
            if t >= spec.duration_s:
                break
            calls.append(Call(round(t, 6), names[rank], execs[rank]))
    calls.sort(key=lambda c: (c.at_s, c.fn))
    return calls


def floor_fraction(calls: Sequence[Call], idle_timeout_s: float, after_s: float) -> float:
    """Share of the calls at or after `after_s` whose function was idle longer than
    `idle_timeout_s` (or never called): cold whatever the routing."""
    last: dict[str, float] = {}
    counted = cold = 0
    for call in calls:
        if call.at_s >= after_s:
            counted += 1
            before = last.get(call.fn)
            if before is None or call.at_s - before > idle_timeout_s:
                cold += 1
        last[call.fn] = call.at_s
    return cold / counted if counted else 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the client saw of one call."""

    call: Call
    status: int
    """HTTP status, or 0 when no answer came (connection error, timeout)."""
    latency_s: float
    cold: bool
    node: str
    """The Fn node that answered (fnsim's `Fnsim-Node`), "" when unknown."""
    node_s: float = math.nan
    """The node's part of the latency: the wait for a container (a cold start included;
    fnsim's `Xxx-Fxlb-Wait`) and the execution; nan when unknown. The rest is the balancer,
    the network and the client, all sharing the bench's machine."""


@dataclass(frozen=True, slots=True)
class Row:
    """One configuration's line of the table."""

    calls: int
    cold_fraction: float
    p50_ms: float
    p99_ms: float
    node_p99_ms: float
    """p99 of the nodes' part (`Outcome.node_s`): what routing decides, apart from the CPU
    the balancers, the nodes and the client share on one machine."""
    rest_p99_ms: float
    """p99 of the rest of each call's latency (the client's latency less `Outcome.node_s`):
    the balancer's own time, with the network's and the client's, on the shared CPUs."""
    errors: int
    nodes_per_function: float
    busiest_share: float


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of ascending values, nearest rank; nan when empty."""
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def summarise(outcomes: Iterable[Outcome], after_s: float) -> Row:
    """The table row of the calls made at or after `after_s` (the warm-up is not counted).

    Cold fraction and nodes per function are over answered calls (status 200); latency over
    every call that got an answer; errors are all calls without a 200."""
    answered = 0
    cold = 0
    errors = 0
    latencies: list[float] = []
    at_nodes: list[float] = []
    rest: list[float] = []
    per_node: dict[str, int] = {}
    fn_nodes: dict[str, set[str]] = {}
    calls = 0
    for o in outcomes:
        if o.call.at_s < after_s:
            continue
        calls += 1
        if o.status != 200:
            errors += 1
            continue
        answered += 1
        cold += o.cold
        latencies.append(o.latency_s)
        if not math.isnan(o.node_s):
            at_nodes.append(o.node_s)
            rest.append(o.latency_s - o.node_s)
        per_node[o.node] = per_node.get(o.node, 0) + 1
        fn_nodes.setdefault(o.call.fn, set()).add(o.node)
    latencies.sort()
    at_nodes.sort()
    rest.sort()
    return Row(
        calls=calls,
        cold_fraction=cold / answered if answered else math.nan,
        p50_ms=1000.0 * percentile(latencies, 0.50),
        p99_ms=1000.0 * percentile(latencies, 0.99),
        node_p99_ms=1000.0 * percentile(at_nodes, 0.99),
        rest_p99_ms=1000.0 * percentile(rest, 0.99),
        errors=errors,
        nodes_per_function=(
            sum(len(v) for v in fn_nodes.values()) / len(fn_nodes) if fn_nodes else math.nan
        ),
        busiest_share=max(per_node.values()) / answered if answered else math.nan,
    )
