"""Cold starts by routing across many workloads, in virtual time: where does fnlb beat one node?

`bench/routing` measures one workload with real processes (~11 minutes a run). This replays
the same kind of trace (`bench/routing_workload`) through modelled Fn nodes
(`fnlb.fnsim.fleet`: the PoolModel `fnlb fnsim` itself runs: 128 MB containers, 300 ms cold
start, Fn's LRU eviction of idle containers) for a grid of workloads, each under these
configurations:

- `rr`: round robin, one counter per balancer (HAProxy `balance roundrobin`);
- `chash`: consistent hashing with bounded load, a model of HAProxy `balance uri` +
  `hash-type consistent` + `hash-balance-factor 125`: 16 ring points per server (weight 1),
  a server is skipped while its requests in flight at that balancer reach
  ceil((all in flight + 1) x 1.25 / servers);
- `hash`: plain consistent hashing: a real Peer with `--routing=rendezvous`, no bound;
- `classic`: `fnlb.routing.classic.ClassicRouter`, one per balancer (the original fnlb);
- `placed`: fnlb before issue 16: a real Peer (fnlb.peer.core) whose control loop places homes
  of the 16 hottest, widths by concurrency, p2c comparing loads;
- `fnlb`: the default, a real Peer whose control loop places by admission
  (fnlb/routing/admission.py): the protected set, the tail's nodes, widths that spread a
  function's calls, p2c's coin;
- `wait`: `fnlb` with wait for warm at the balancer (`replay`'s `hold_s`; an experiment of
  this bench, not in fnlb);
- `pooled`: one node holding all five nodes' memory, no balancer: Fn's own cache unsplit.

The fnlb configurations share one view and one load table, as the peers of a converged
cluster compute alike. Calls reach one of three balancers at random, as DNS spreads clients.
It prints, per workload, the floor (calls after a gap longer than the idle timeout: cold
under any routing), every configuration's cold % with its busiest node over the mean node,
`*` where some node saturated (503s or waits over 1 s), fnlb's ratio to pooled memory (issue
16 asks for 0.85; marked) and its gap to plain hashing; then the mean ratios and the counts
issue 16 asks for.

The models are calibrated against `bench/routing`'s real processes (docs/routing.md gives
both). Deterministic: same arguments, same table. Rerun (repository root; a few minutes):

    python -m bench.routing_landscape
    python -m bench.routing_landscape --functions 300,1000 --rates 40,120 \
        --zipf-s 0.8,0.9,1.0,1.1 --seeds 1 --memory-mb 1024,2048,4096 --idle-timeout-s 30 \
        --exec-ms 20,20 --burst-rank 0

bench/routing's two profiles over several traces (docs/routing.md, "Sticky homes, agreed in
push-pull"): its default workload, then the roomy one.

    python -m bench.routing_landscape --functions 200 --rates 40 --zipf-s 1.5 \
        --seeds 1,2,3,4,5,6,7,8 --duration-s 120
    python -m bench.routing_landscape --functions 300 --rates 120 --zipf-s 1.1 \
        --seeds 1,2,3,4 --memory-mb 2048 --idle-timeout-s 30 --exec-ms 20,20 \
        --burst-rank 0 --duration-s 120
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import math
import random
import sys
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

if __package__ in (None, ""):  # run as a file: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.routing_workload import WorkloadSpec, centred_spec, floor_fraction, make_trace
from fnlb.fnsim.fleet import Fleet
from fnlb.fnsim.model import CallFinished, CallRejected, PoolConfig
from fnlb.payloads.node_metrics import NodeMetrics
from fnlb.peer.core import PUMP_S, Peer
from fnlb.routing.attempt import BUSY, Attempt
from fnlb.routing.classic import ClassicRouter
from fnlb.routing.hotset_policy import HotSetPolicy
from fnlb.routing.load_router import Router, RouterPolicy
from fnlb.routing.policies import RendezvousPolicy, RoutingPolicy
from fnlb.routing.rendezvous import hash64
from fnlb.routing.widths import WidthPolicy

BALANCERS = 3
NODES = [f"127.0.1.{i + 1}:18080" for i in range(5)]
CONTENDERS = ("rr", "chash", "classic")
TARGET = 0.85
"""Issue 16: fnlb's cold fraction at most 0.85x pooled memory's."""
T0 = 1_800_000_000.0
"""Virtual time 0 as wall-clock seconds, for the digests' stamps and the aligned cuts."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What a balancer learns from one attempt: status, Fn's wait header, time to answer."""

    status: int
    wait_s: float | None
    answer_s: float | None
    at: float


class Policy(Protocol):
    """A balancer configuration: an order of nodes per call, told what it sent and got."""

    def choose(self, lb: int, key: str, now: float) -> Sequence[str]: ...
    def started(self, lb: int, node: str, key: str, now: float) -> None: ...
    def finished(self, lb: int, node: str, key: str, answer: Answer) -> None: ...


class RoundRobin:
    def __init__(self, nodes: Sequence[str]) -> None:
        self._nodes = list(nodes)
        self._next = [random.Random(i).randrange(len(nodes)) for i in range(BALANCERS)]

    def choose(self, lb: int, key: str, now: float) -> Sequence[str]:
        i = self._next[lb]
        self._next[lb] = (i + 1) % len(self._nodes)
        return self._nodes[i:] + self._nodes[:i]

    def started(self, lb: int, node: str, key: str, now: float) -> None:
        return None

    def finished(self, lb: int, node: str, key: str, answer: Answer) -> None:
        return None


class BoundedHash:
    """HAProxy's consistent hash with bounded load, as modelled in the module docstring."""

    def __init__(self, nodes: Sequence[str], points: int = 16, factor: float = 1.25) -> None:
        ring = sorted((hash64(f"{n}#{i}") & 0xFFFFFFFF, n) for n in nodes for i in range(points))
        self._keys = [k for k, _ in ring]
        self._owners = [n for _, n in ring]
        self._count = len(nodes)
        self._factor = factor
        self._served = [dict.fromkeys(nodes, 0) for _ in range(BALANCERS)]

    def choose(self, lb: int, key: str, now: float) -> Sequence[str]:
        start = bisect.bisect(self._keys, hash64(key) & 0xFFFFFFFF)
        order: list[str] = []
        for j in range(len(self._owners)):
            node = self._owners[(start + j) % len(self._owners)]
            if node not in order:
                order.append(node)
                if len(order) == self._count:
                    break
        served = self._served[lb]
        cap = math.ceil((sum(served.values()) + 1) * self._factor / self._count)
        for node in order:
            if served[node] < cap:
                order.remove(node)
                return [node, *order]
        return order

    def started(self, lb: int, node: str, key: str, now: float) -> None:
        self._served[lb][node] += 1

    def finished(self, lb: int, node: str, key: str, answer: Answer) -> None:
        self._served[lb][node] -= 1


class Classic:
    def __init__(self, nodes: Sequence[str]) -> None:
        self._nodes = sorted(nodes)
        self._routers = [ClassicRouter(rng=random.Random(i)) for i in range(BALANCERS)]

    def choose(self, lb: int, key: str, now: float) -> Sequence[str]:
        return self._routers[lb].candidates(key, self._nodes)

    def started(self, lb: int, node: str, key: str, now: float) -> None:
        return None

    def finished(self, lb: int, node: str, key: str, answer: Answer) -> None:
        if answer.wait_s is not None:
            self._routers[lb].observe(node, key, int(answer.wait_s * 1e9))


class Fnlb:
    """One real `Peer` (fnlb.peer.core) routes for every balancer: one shared view and one load
    table, as the peers of a converged cluster have. It is pumped every 0.1 s of virtual time
    as production's pump does (digests, the control loop's widths and placement, back-off),
    told every attempt as the proxy tells it, and given each node's size as its /metrics
    would report it. `routing`: `--routing` (hotset, the default, or rendezvous: plain
    consistent hashing). `admit=False` is fnlb before issue 16 (placed homes of the hottest,
    widths by concurrency alone, p2c always comparing loads)."""

    def __init__(
        self,
        nodes: Sequence[str],
        *,
        routing: str = "hotset",
        admit: bool = True,
        memory_mb: int = 1024,
        router: RouterPolicy | None = None,
        widths: WidthPolicy | None = None,
    ) -> None:
        """`router`, `widths`: policies other than the defaults (experiments)."""
        self._now = 0.0
        # Before issue 16 (`admit=False`): p2c always compared loads, widths by concurrency
        light, share = (RouterPolicy().light_share, WidthPolicy().call_share) if admit else (0, 0)
        router = router or RouterPolicy(light_share=light)
        widths = widths or WidthPolicy(call_share=share)
        policy: RoutingPolicy = (
            HotSetPolicy(Router(router, rng=random.Random(3)), self._wall_s)
            if routing == "hotset"
            else RendezvousPolicy()
        )
        self._peer = Peer(
            "peer",
            routing=policy,
            clock_ms=self._wall_ms,
            gossip=False,
            seed=nodes,
            epoch_ms=1,
            width_policy=widths,
            admission=admit,
        )
        for node in nodes:
            for _ in range(2):
                self._peer.health_checked(node, True, self._wall_ms())
        self._nodes = list(nodes)
        self._memory = float(memory_mb * 1024 * 1024)
        self._next_tick = 0.0

    @property
    def peer(self) -> Peer:
        """The Peer that routes for every balancer (experiments may hold its placement)."""
        return self._peer

    def _wall_s(self) -> float:
        return T0 + self._now

    def _wall_ms(self) -> int:
        return int((T0 + self._now) * 1000)

    def choose(self, lb: int, key: str, now: float) -> Sequence[str]:
        while now >= self._next_tick:
            self._now = self._next_tick
            at_ms = self._wall_ms()
            for node in self._nodes:
                self._peer.metrics_read(node, NodeMetrics(0.0, 0.0, 0.0, self._memory, 0.0, at_ms))
            self._peer.tick(self._wall_s())
            self._next_tick += PUMP_S
        self._now = now
        return list(self._peer.candidates(key, "/" + key))

    def started(self, lb: int, node: str, key: str, now: float) -> None:
        self._now = now
        self._peer.attempt_started(key, node, self._wall_s())

    def finished(self, lb: int, node: str, key: str, answer: Answer) -> None:
        a = answer
        at = T0 + a.at
        self._now = a.at
        answered = at if a.status != BUSY else None
        self._peer.attempt_finished(
            Attempt(key, node, "/" + key, a.status, at, a.wait_s, None, a.answer_s, answered)
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """One configuration's figures on one workload."""

    cold: float
    """% of counted calls that waited for a container start."""
    busiest: float
    """The busiest node's calls over the mean node's."""
    busy: int
    """503s answered (a call moved on, or was lost when no node was left)."""
    queued: int
    """Counted calls that waited over a second: a node out of containers."""
    held_ms: float = 0.0
    """Mean time a counted call was held at the balancer (wait for warm), ms."""

    @property
    def saturated(self) -> bool:
        return self.busy > 0 or self.queued > 0


def replay(
    policy: Policy,
    spec: WorkloadSpec,
    pool: PoolConfig,
    nodes: Sequence[str],
    after_s: float,
    hold_s: float = 0.0,
) -> Outcome:
    """Replay `spec`'s trace through `policy` onto modelled nodes.

    `hold_s` > 0: wait for warm (issue 16, an experiment in the bench only). A balancer
    holds a call instead of sending it when, by what it sees itself, every warm container
    of the function on the chosen node is busy (its own calls in flight there reach the most
    it has had at once, i.e. the containers it made that node start) and the function's
    warm answers take under half a cold start; the first of its calls there to finish
    releases the held one onto the container it frees, and none waits over `hold_s`.
    """
    fleet = Fleet(len(nodes), pool, random.Random(spec.seed))
    index = {n: i for i, n in enumerate(nodes)}
    pick = random.Random(spec.seed + 5)
    calls: dict[Hashable, tuple[int, str, Sequence[str], float, float]] = {}
    tries: dict[Hashable, int] = {}
    per_node = [0] * len(nodes)
    counted = cold = busy = queued = 0
    # wait for warm: per (balancer, function, node)
    in_flight: dict[tuple[int, str, str], int] = {}
    warm: dict[tuple[int, str, str], tuple[int, float]] = {}  # (most at once, last call)
    held: dict[tuple[int, str, str], list[Hashable]] = {}
    deadlines: list[tuple[float, int]] = []
    exec_est: dict[tuple[int, str], float] = {}
    held_s = 0.0

    def send(call_id: Hashable, node: str, at: float) -> None:
        lb, key, _order, _at, exec_s = calls[call_id]
        k = (lb, key, node)
        n = in_flight[k] = in_flight.get(k, 0) + 1
        most, last = warm.get(k, (0, at))
        if at - last > pool.idle_timeout_s:
            most = 0  # idle past the timeout: its containers are gone
        warm[k] = (max(most, n), at)
        policy.started(lb, node, key, at)
        fleet.submit(index[node], call_id, key, exec_s, at)

    def done(lb: int, key: str, node: str, at: float) -> None:
        nonlocal held_s
        k = (lb, key, node)
        in_flight[k] -= 1
        waiting = held.get(k)
        if waiting:
            call_id = waiting.pop(0)
            tries[call_id] = 0
            if calls[call_id][3] >= after_s:
                held_s += at - calls[call_id][3]
            send(call_id, node, at)

    def settle(upto: float) -> None:
        nonlocal counted, cold, busy, queued
        fleet.advance(upto)
        for node_index, event in fleet.drain_events():
            if not isinstance(event, CallFinished | CallRejected):
                continue
            lb, key, order, at, _exec_s = calls[event.call_id]
            node = nodes[node_index]
            if isinstance(event, CallFinished):
                del calls[event.call_id]
                answer = Answer(200, event.waited_s, event.waited_s + event.ran_s, event.at)
                policy.finished(lb, node, key, answer)
                if not event.cold:
                    old = exec_est.get((lb, key), event.ran_s)
                    exec_est[(lb, key)] = 0.8 * old + 0.2 * event.ran_s
                if at >= after_s:
                    counted += 1
                    cold += event.cold
                    queued += event.waited_s > 1.0
                    per_node[node_index] += 1
                done(lb, key, node, event.at)
                continue
            # busy: the next node, as fnlb does
            busy += 1
            policy.finished(lb, node, key, Answer(503, None, event.waited_s, event.at))
            tries[event.call_id] += 1
            nxt = order[tries[event.call_id]] if tries[event.call_id] < len(order) else None
            done(lb, key, node, event.at)
            if nxt is not None:
                send(event.call_id, nxt, event.at)
            else:
                del calls[event.call_id]

    def until(t: float) -> None:
        """Everything up to `t`: the nodes' timers and the held calls' deadlines in order."""
        nonlocal held_s
        while True:
            due = fleet.next_timer()
            limit = deadlines[0][0] if deadlines else math.inf
            if due is not None and due <= min(t, limit):
                settle(due)
            elif limit <= t:
                at, call_id = heapq.heappop(deadlines)
                settle(at)
                if call_id in calls and tries[call_id] < 0:  # still held: send it now
                    lb, key, order, _at, _e = calls[call_id]
                    held[(lb, key, order[0])].remove(call_id)
                    tries[call_id] = 0
                    if _at >= after_s:
                        held_s += at - _at
                    send(call_id, order[0], at)
            else:
                break
        settle(t)

    for call_id, call in enumerate(make_trace(spec)):
        until(call.at_s)
        lb = pick.randrange(BALANCERS)
        key = "/r/bench/" + call.fn
        order = policy.choose(lb, key, call.at_s)
        calls[call_id] = (lb, key, order, call.at_s, call.exec_ms / 1000)
        tries[call_id] = 0
        k = (lb, key, order[0])
        most, last = warm.get(k, (0, call.at_s))
        n = in_flight.get(k, 0)
        typical = exec_est.get((lb, key))
        if (
            hold_s > 0
            and n >= 1
            and n >= most
            and call.at_s - last <= pool.idle_timeout_s
            and typical is not None
            and typical < pool.cold_start_s / 2
            and len(held.setdefault(k, [])) < n
        ):
            held[k].append(call_id)
            tries[call_id] = -1  # held
            heapq.heappush(deadlines, (call.at_s + hold_s, call_id))
            continue
        send(call_id, order[0], call.at_s)
    mean = sum(per_node) / len(per_node) if counted else 0.0
    return Outcome(
        100.0 * cold / counted if counted else 0.0,
        max(per_node) / mean if mean else 0.0,
        busy,
        queued,
        1000.0 * held_s / counted if counted else 0.0,
    )


def cold_percent(
    policy: Policy, spec: WorkloadSpec, pool: PoolConfig, nodes: Sequence[str], after_s: float
) -> float:
    """Replay `spec`'s trace through `policy` onto modelled nodes; % of counted calls cold."""
    return replay(policy, spec, pool, nodes, after_s).cold


CONFIGS = ("rr", "chash", "hash", "classic", "placed", "fnlb", "wait", "pooled")
"""Columns: `hash` is plain rendezvous, `placed` fnlb's placed homes (issue 5), `fnlb` the
default (admission, fnlb.routing.admission), `wait` the same with wait for warm (`replay`'s
`hold_s`, 0.3 s: an experiment of the bench, not in fnlb), `pooled` the reference."""
HOLD_S = 0.3
"""Wait for warm: the longest a call is held, a cold start's time."""


def row(
    spec: WorkloadSpec, memory_mb: int, idle_s: float, after_s: float
) -> tuple[float, dict[str, Outcome]]:
    """Floor and every configuration's outcome for one workload."""
    pool = PoolConfig(memory_mb=memory_mb, cold_start_s=0.3, idle_timeout_s=idle_s, max_wait_s=15)
    pooled = PoolConfig(
        memory_mb=memory_mb * len(NODES), cold_start_s=0.3, idle_timeout_s=idle_s, max_wait_s=15
    )
    floor = 100.0 * floor_fraction(make_trace(spec), idle_s, after_s)
    policies: dict[str, Policy] = {
        "rr": RoundRobin(NODES),
        "chash": BoundedHash(NODES),
        "hash": Fnlb(NODES, routing="rendezvous", memory_mb=memory_mb),
        "classic": Classic(NODES),
        "placed": Fnlb(NODES, admit=False, memory_mb=memory_mb),
        "fnlb": Fnlb(NODES, memory_mb=memory_mb),
    }
    out = {name: replay(policy, spec, pool, NODES, after_s) for name, policy in policies.items()}
    wait = Fnlb(NODES, memory_mb=memory_mb)
    out["wait"] = replay(wait, spec, pool, NODES, after_s, hold_s=HOLD_S)
    out["pooled"] = replay(RoundRobin(NODES[:1]), spec, pooled, NODES[:1], after_s)
    return floor, out


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--functions", default="100,200,400", help="comma-separated")
    ap.add_argument("--rates", default="10,20,40,80", help="mean calls/s, comma-separated")
    ap.add_argument("--zipf-s", default="1.1,1.5", help="Zipf exponents, comma-separated")
    ap.add_argument("--seeds", default="1,2", help="trace seeds, comma-separated")
    ap.add_argument("--memory-mb", default="1024", help="per node, comma-separated (1024: 8)")
    ap.add_argument("--idle-timeout-s", type=float, default=15.0, help="as bench/routing: 15")
    ap.add_argument("--exec-ms", default="10,100", help="low,high: log-uniform per function")
    ap.add_argument("--burst-rank", type=int, default=1, help="0 = the hottest bursts")
    ap.add_argument("--duration-s", type=float, default=240.0)
    ap.add_argument("--warm-s", type=float, default=30.0, help="first s not counted (30)")
    args = ap.parse_args(argv)
    after = args.warm_s
    if not 0 <= after < args.duration_s - 30:
        ap.error("--warm-s must be >= 0 and leave more than 30 s of --duration-s")
    try:
        low, high = _floats(args.exec_ms)
        memories = [int(x) for x in args.memory_mb.split(",")]
    except ValueError:
        ap.error("--exec-ms takes low,high in ms; --memory-mb integers")
    if any(m < 128 for m in memories):
        ap.error("--memory-mb must hold at least one 128 MB container")
    print(
        f"5 nodes, 128 MB containers, cold start 300 ms, idle timeout {args.idle_timeout_s:g} s,"
        f" executions {low:g}-{high:g} ms, {args.duration_s:g} s traces (first {after:g} s not "
        f"counted), one 10x burst of the function of rank {args.burst_rank} mid-way; cold %, "
        "busiest node / mean in brackets, * = some node saturated (503s or waits over 1 s)"
    )
    head = "| MB | functions | calls/s | Zipf s | seed | floor % | "
    print(
        head
        + " | ".join(CONFIGS)
        + " | placed / pooled | fnlb / pooled | fnlb - hash | wait / pooled | held ms |"
    )
    print("|" + "---:|" * (11 + len(CONFIGS)))
    ratios: list[tuple[float, float, float]] = []
    busiest = 0.0
    beats = worse_than_hash = loses_to_placed = met = 0
    for memory in memories:
        for functions in [int(x) for x in args.functions.split(",")]:
            for rate in _floats(args.rates):
                for s in _floats(args.zipf_s):
                    for seed in [int(x) for x in args.seeds.split(",")]:
                        spec = replace(
                            centred_spec(functions, rate, s, args.duration_s, after, seed),
                            exec_ms=(low, high),
                            burst_rank=min(args.burst_rank, functions - 1),
                        )
                        floor, r = row(spec, memory, args.idle_timeout_s, after)
                        pooled = r["pooled"].cold or 1.0
                        ratio = r["fnlb"].cold / pooled
                        ratios.append((r["placed"].cold / pooled, ratio, r["wait"].cold / pooled))
                        beats += r["fnlb"].cold < r["pooled"].cold
                        met += ratio <= TARGET
                        gap = r["fnlb"].cold - r["hash"].cold
                        worse_than_hash += gap > 1.0 and not r["hash"].saturated
                        loses_to_placed += r["fnlb"].cold > r["placed"].cold
                        busiest = max(busiest, r["fnlb"].busiest)
                        cells = " | ".join(
                            f"{o.cold:.1f}{'*' if o.saturated else ''} ({o.busiest:.2f})"
                            for o in (r[k] for k in CONFIGS)
                        )
                        print(
                            f"| {memory} | {functions} | {rate:g} | {s:g} | {seed} "
                            f"| {floor:.1f} | {cells} | {ratios[-1][0]:.2f} | {ratio:.2f}"
                            f"{' **' if ratio <= TARGET else ''} | {gap:+.1f} "
                            f"| {ratios[-1][2]:.2f} | {r['wait'].held_ms:.1f} |"
                        )
    n = len(ratios)
    print(
        f"\nmean ratio to pooled memory: placed {sum(x[0] for x in ratios) / n:.3f}, "
        f"fnlb {sum(x[1] for x in ratios) / n:.3f}, fnlb with wait for warm "
        f"{sum(x[2] for x in ratios) / n:.3f}"
    )
    print(f"fnlb's busiest node, the most of any workload: {busiest:.2f}x the mean")
    print(f"fnlb under pooled memory: {beats} of {n} workloads")
    print(f"fnlb at or under {TARGET:.2f}x pooled memory: {met} of {n} workloads")
    print(f"fnlb over a point worse than plain hashing, no node saturated: {worse_than_hash}")
    print(f"fnlb worse than placed homes: {loses_to_placed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
