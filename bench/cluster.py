"""The cluster layer's figures (fnlb issue 4), measured with real processes on loopback.

One run starts, for each cluster size N in `--sizes` (default 3 and 10), N `fnlb serve`
peers (gossip in plaintext, `-state-dir` each, default health-check settings unless
`--hc-interval`) in front of emulated Fn nodes (`fnlb fnsim`), and measures:

1. **Add -> routable everywhere.** `--changes` times (default 100), a `PUT /1/lb/nodes` of a
   new, live node on peer i mod N, while the bench polls every peer's `GET /1/lb/nodes`
   every `--poll` s (default 0.01) until the node is `online` on all of them. The figure is
   the time from sending the PUT to the last peer showing it online (p50, p99, max); the
   PUT's own answer time is printed beside it.
2. **Node death -> out of every peer's routable set** (at the sizes in `--fail-sizes`,
   default 3 and 10). Each trial adds a node served by its own fnsim process, kills that
   process with SIGKILL and polls every peer until none lists the node `online`. Modes:
   `traffic-one` (calls to functions homed on that node go through peer 0 only, one every
   `--call-interval` s), `traffic-all` (the same calls through every peer), `idle` (no calls:
   only the periodic checks, every `-hc-interval`, default 3 s). Figures from the kill, and
   from the first call sent after the kill (the first call that could fail), median and max.
3. **Gossip cost and memory with 200 nodes and 10,000 functions** (at each N in
   `--load-sizes`, default 3 and 10, on fresh peers so that no earlier calls linger in their
   load figures). All `--nodes` (200) nodes go into the list; once the backlog of that bulk
   change has drained from gossip, a baseline with no calls; then a paced load generator
   sends `--rate` calls/s (default 1000; round-robin over the peers) over `--functions`
   (10,000) distinct functions, each call `?ms=1`. After `--warm` s (20) of load, each peer's
   gossip counters (`GET /1/lb/gossip`) are read twice `--window` s (20) apart while the load
   goes on; then each peer's VmRSS and VmHWM (peak), and its CPU over the window.

Kills happen at a random phase (`--seed`) against the peers' check rounds. `--nice=-10` (root)
gives every process of the run priority over other work on a shared machine, as in
bench/proxy: without it, at a load average of 12, the load generator reached 375 calls/s.

Fn nodes: `--nodes` nodes in two fnsim processes (`--cold-start-ms 1 --default-ms 1
--memory-mb 65536`, so the emulator is not the bottleneck); trial nodes of figure 2 each run in
a process of their own. Every process binds 127.0.0.1 and is stopped by its PID; the temporary
directory (state dirs, logs) is removed unless `--keep`.

Targets (issue 4): a node added on one peer routable on all within 1 s; a dead node out of
every peer's routable set within about one second of the first failed call to it; a peer with
10,000 functions over 200 nodes under ~150 MB RSS.

Rerun (from the repository root; the default run takes ~7.5 minutes on 2 cores):

    python -m bench.cluster --nice=-10     # N=3 and N=10: all three figures
    python bench/cluster.py --quick        # N=3, few changes and trials, 20 nodes: ~35 s
    python -m bench.cluster --sizes 3 --fail-sizes 3 --trials 10 --load-sizes 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

if __package__ in (None, ""):  # run as a file: make `bench` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._cluster_procs import (
    Fnsim,
    Peer,
    fnsim_addresses,
    memory_mb,
    spawn_fnsim,
    start_peers,
)
from bench._procs import ProcessGroup, cpu_seconds, set_priority
from fnlb.routing.rendezvous import RendezvousTable

MODES = ("traffic-one", "traffic-all", "idle")
TIMEOUT = aiohttp.ClientTimeout(total=5)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- talking to peers -------------------------------------------------------------------


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, timeout=TIMEOUT) as r:
        r.raise_for_status()
        return await r.json()


async def node_states(session: aiohttp.ClientSession, peer: Peer) -> dict[str, str] | None:
    """`peer`'s routing view (node -> online/offline/unknown), or None if it did not answer."""
    try:
        body = await get_json(session, f"{peer.mgmt_url}/1/lb/nodes")
    except (aiohttp.ClientError, OSError, ValueError, TimeoutError):
        return None
    nodes: dict[str, str] = body.get("nodes", {})
    return nodes


async def change_node(
    session: aiohttp.ClientSession, peer: Peer, node: str, method: str = "PUT"
) -> int:
    """PUT or DELETE `node` on `peer`; the HTTP status."""
    url = f"{peer.mgmt_url}/1/lb/nodes"
    async with session.request(method, url, json={"node": node}, timeout=TIMEOUT) as r:
        await r.read()
        return r.status


async def watch_until(
    session: aiohttp.ClientSession,
    peer: Peer,
    done: Any,
    t0: float,
    poll: float,
    deadline: float,
) -> float | None:
    """Poll `peer`'s view until `done(states)`; seconds since `t0`, None past `deadline`."""
    while time.monotonic() < deadline:
        states = await node_states(session, peer)
        if states is not None and done(states):
            return time.monotonic() - t0
        await asyncio.sleep(poll)
    return None


async def until_everywhere(
    session: aiohttp.ClientSession,
    peers: Sequence[Peer],
    done: Any,
    t0: float,
    poll: float,
    within: float,
) -> list[float | None]:
    """Each peer's time (since `t0`) until `done(states)` holds there."""
    deadline = t0 + within
    return list(
        await asyncio.gather(*(watch_until(session, p, done, t0, poll, deadline) for p in peers))
    )


def online(node: str) -> Any:
    return lambda states: states.get(node) == "online"


def not_online(node: str) -> Any:
    return lambda states: states.get(node) != "online"


# --- figure 1: add -> routable everywhere ------------------------------------------------


@dataclass
class AddResult:
    n: int
    put_s: list[float] = field(default_factory=list)
    all_s: list[float] = field(default_factory=list)
    first_s: list[float] = field(default_factory=list)
    timeouts: int = 0
    errors: int = 0


async def measure_adds(
    session: aiohttp.ClientSession,
    peers: Sequence[Peer],
    nodes: Sequence[str],
    poll: float,
    within: float,
) -> AddResult:
    """PUT each node on peer i mod N in turn; time until every peer routes to it."""
    result = AddResult(len(peers))
    for i, node in enumerate(nodes):
        t0 = time.monotonic()
        watch = asyncio.ensure_future(
            until_everywhere(session, peers, online(node), t0, poll, within)
        )
        try:
            status = await change_node(session, peers[i % len(peers)], node)
        except (aiohttp.ClientError, OSError, TimeoutError):
            status = 0
        result.put_s.append(time.monotonic() - t0)
        if status != 200:
            result.errors += 1
        times = await watch
        if any(t is None for t in times):
            result.timeouts += 1
        else:
            done = [t for t in times if t is not None]
            result.all_s.append(max(done))
            result.first_s.append(min(done))
        await asyncio.sleep(0.02)
    return result


# --- figure 2: node death -> out everywhere -----------------------------------------------


@dataclass
class FailTrial:
    mode: str
    from_kill: float | None  # kill -> no peer routes to it
    first_peer: float | None  # kill -> the first peer stopped routing to it
    first_call: float | None  # kill -> the first call sent after the kill (traffic modes)
    calls: int = 0
    errors: int = 0
    homed: int = 0  # calls before the kill that reached the victim (checks the set-up)
    why: dict[str, int] = field(default_factory=dict)  # failed calls by answer


async def homed_functions(
    session: aiohttp.ClientSession, peer: Peer, node: str, count: int, tag: str
) -> list[str]:
    """Function paths whose first choice is `node` in `peer`'s current routable set."""
    states = await node_states(session, peer) or {}
    table = RendezvousTable([n for n, s in states.items() if s == "online"])
    out: list[str] = []
    for k in range(100_000):
        path = f"r/bench/{tag}-{k}"
        if table.first(path) == node:
            out.append(f"/{path}")
            if len(out) == count:
                break
    return out


@dataclass
class CallLog:
    sent_after_kill: float | None = None
    calls: int = 0
    errors: int = 0
    homed: int = 0
    why: dict[str, int] = field(default_factory=dict)

    def failed(self, why: str) -> None:
        self.errors += 1
        self.why[why] = self.why.get(why, 0) + 1


async def call_loop(
    session: aiohttp.ClientSession,
    targets: Sequence[Peer],
    paths: Sequence[str],
    node: str,
    interval: float,
    stop: asyncio.Event,
    killed: list[float],
    out: CallLog,
    max_s: float,
) -> None:
    """One call per `interval` through each target peer, round the paths, until `stop`."""

    async def one(peer: Peer, path: str) -> None:
        if killed and out.sent_after_kill is None:
            out.sent_after_kill = time.monotonic() - killed[0]
        try:
            async with session.post(f"{peer.call_url}{path}?ms=1", timeout=TIMEOUT) as r:
                await r.read()
                out.calls += 1
                if r.status != 200:
                    body = (await r.text())[:120]
                    out.failed(f"{r.status} {body}")
                elif not killed and r.headers.get("Fnsim-Node") == node:
                    out.homed += 1
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            out.calls += 1
            out.failed(f"client {type(e).__name__}")

    end = time.monotonic() + max_s
    k = 0
    pending: set[asyncio.Task[None]] = set()
    while not stop.is_set() and time.monotonic() < end:
        for peer in targets:
            task = asyncio.ensure_future(one(peer, paths[k % len(paths)]))
            pending.add(task)
            task.add_done_callback(pending.discard)
            k += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
    if pending:
        await asyncio.wait(pending, timeout=6)


async def failure_trial(
    session: aiohttp.ClientSession,
    peers: Sequence[Peer],
    victim: Fnsim,
    mode: str,
    args: argparse.Namespace,
    tag: str,
) -> FailTrial:
    node = victim.addresses[0]
    await change_node(session, peers[0], node)
    t0 = time.monotonic()
    up = await until_everywhere(session, peers, online(node), t0, args.poll, 15.0)
    if any(t is None for t in up):
        raise RuntimeError(f"{node} did not come online on every peer")
    stop = asyncio.Event()
    killed: list[float] = []
    calls = CallLog()
    loop_task: asyncio.Future[None] | None = None
    if mode != "idle":
        paths = await homed_functions(session, peers[0], node, 4, tag)
        targets = peers[:1] if mode == "traffic-one" else peers
        loop_task = asyncio.ensure_future(
            call_loop(session, targets, paths, node, args.call_interval, stop, killed, calls, 60)
        )
        await asyncio.sleep(0.5)  # steady traffic, routed to the node, before the kill
    # A random phase against the peers' check rounds, so that trials sample all of them.
    await asyncio.sleep(args.rng.uniform(0, args.hc_interval_s))
    t_kill = await asyncio.to_thread(victim.kill9)
    killed.append(t_kill)
    gone = await until_everywhere(
        session, peers, not_online(node), t_kill, args.poll, args.fail_timeout
    )
    stop.set()
    if loop_task is not None:
        await loop_task
    await change_node(session, peers[0], node, "DELETE")
    done = [t for t in gone if t is not None]
    return FailTrial(
        mode,
        max(done) if len(done) == len(gone) else None,
        min(done) if done else None,
        calls.sent_after_kill,
        calls.calls,
        calls.errors,
        calls.homed,
        calls.why,
    )


async def measure_failures(
    session: aiohttp.ClientSession,
    group: ProcessGroup,
    peers: Sequence[Peer],
    args: argparse.Namespace,
) -> list[FailTrial]:
    """`--trials` trials of each mode, interleaved; each with a fresh one-node fnsim."""
    plan = [m for _ in range(args.trials) for m in args.modes]
    fnsim_args = ["--cold-start-ms=1", "--default-ms=1", "--memory-mb=4096"]
    procs = [
        spawn_fnsim(group, f"victim-n{len(peers)}-{i}", 1, fnsim_args) for i in range(len(plan))
    ]
    trials = []
    for i, (mode, proc) in enumerate(zip(plan, procs, strict=True)):
        victim = await asyncio.to_thread(fnsim_addresses, proc, 1)
        trial = await failure_trial(session, peers, victim, mode, args, f"t{len(peers)}-{i}")
        log(
            f"  N={len(peers)} {mode}: out everywhere {_fmt(trial.from_kill)} s after the kill "
            f"(first peer {_fmt(trial.first_peer)} s), calls {trial.calls}, "
            f"errors {trial.errors}, reached the node before the kill {trial.homed}"
        )
        for why, count in trial.why.items():
            log(f"    {count} x {why}")
        trials.append(trial)
    return trials


# --- figure 3: gossip and memory with 200 nodes and 10,000 functions ----------------------


@dataclass
class LoadStats:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    started: float = 0.0
    ended: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / (self.ended - self.started) if self.ended > self.started else 0.0


async def paced_load(
    peers: Sequence[Peer],
    functions: int,
    rate: float,
    duration: float,
    concurrency: int,
    stats: LoadStats,
) -> None:
    """Call k goes out at start + k / rate (no sooner), to peer k mod N, function k mod F.

    Bounded: `duration` seconds and at most `rate * duration` calls. The function sequence is
    shifted each lap so that a function does not always go through the same peer.
    """
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    limit = int(rate * duration)
    start = time.monotonic()
    end = start + duration
    stats.started = start
    counter = 0

    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as s:

        async def worker() -> None:
            nonlocal counter
            while True:
                k = counter
                counter += 1
                if k >= limit:
                    return
                due = start + k / rate
                now = time.monotonic()
                if now > end:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
                fn = k % functions
                peer = peers[(k + k // functions) % len(peers)]
                stats.sent += 1
                try:
                    url = f"{peer.call_url}/r/bench/fn{fn:05d}?ms=1"
                    async with s.post(url) as r:
                        await r.read()
                        if r.status == 200:
                            stats.ok += 1
                        else:
                            stats.errors += 1
                except (aiohttp.ClientError, OSError, TimeoutError):
                    stats.errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    stats.ended = time.monotonic()


@dataclass
class PeerCost:
    name: str
    udp_pkts_out: float
    udp_bytes_out: float
    udp_pkts_in: float
    udp_bytes_in: float
    tcp_bytes: float
    rss_mb: float
    hwm_mb: float
    cpu: float  # CPU seconds per second over the window


@dataclass
class StateCost:
    label: str
    peers: list[PeerCost]
    load: LoadStats | None = None


async def gossip_cost(
    session: aiohttp.ClientSession, peers: Sequence[Peer], label: str, window: float
) -> StateCost:
    """Each peer's gossip traffic and CPU over `window` seconds, then its memory."""

    async def counters() -> list[dict[str, int]]:
        bodies = await asyncio.gather(
            *(get_json(session, f"{p.mgmt_url}/1/lb/gossip") for p in peers)
        )
        return [b["traffic"] for b in bodies]

    cpu0 = [cpu_seconds(p.pid) for p in peers]
    t0 = time.monotonic()
    c0 = await counters()
    await asyncio.sleep(window)
    c1 = await counters()
    dt = time.monotonic() - t0
    cpu1 = [cpu_seconds(p.pid) for p in peers]
    out = []
    for p, a, b, u0, u1 in zip(peers, c0, c1, cpu0, cpu1, strict=True):

        def rate(key: str, a: dict[str, int] = a, b: dict[str, int] = b) -> float:
            return (b.get(key, 0) - a.get(key, 0)) / dt

        rss, hwm = memory_mb(p.pid)
        out.append(
            PeerCost(
                p.name,
                rate("udp_packets_sent"),
                rate("udp_bytes_sent"),
                rate("udp_packets_received"),
                rate("udp_bytes_received"),
                rate("tcp_bytes_sent") + rate("tcp_bytes_received"),
                rss,
                hwm,
                (u1 - u0) / dt,
            )
        )
    return StateCost(label, out)


async def udp_bytes_sent(session: aiohttp.ClientSession, peers: Sequence[Peer]) -> int:
    bodies = await asyncio.gather(*(get_json(session, f"{p.mgmt_url}/1/lb/gossip") for p in peers))
    return sum(int(b["traffic"].get("udp_bytes_sent", 0)) for b in bodies)


async def settle_gossip(
    session: aiohttp.ClientSession, peers: Sequence[Peer], step: float, limit: float
) -> float:
    """Wait until the broadcasts of a bulk change are drained; the seconds waited.

    Adding 200 nodes queues 200 node-list entries and 200 verdicts per peer, each relayed
    by every peer and sent several times within gossip's packet budget: for tens of seconds
    the wire carries that backlog at the budget's cap, not the steady state. Drained: the
    UDP byte rate of a `step` fell below half that of the first step, and the next step is
    no higher; or `limit` seconds passed.
    """
    t0 = time.monotonic()
    last = await udp_bytes_sent(session, peers)
    first: float | None = None
    low: float | None = None
    while time.monotonic() - t0 < limit:
        await asyncio.sleep(step)
        now = await udp_bytes_sent(session, peers)
        rate = (now - last) / step
        last = now
        if first is None:
            first = rate
        elif low is not None and rate <= 1.15 * low:
            break
        elif rate < 0.5 * first:
            low = rate
    return time.monotonic() - t0


async def all_online(
    session: aiohttp.ClientSession, peers: Sequence[Peer], nodes: Sequence[str], within: float
) -> bool:
    want = set(nodes)

    def done(states: dict[str, str]) -> bool:
        return want <= {n for n, s in states.items() if s == "online"}

    times = await until_everywhere(session, peers, done, time.monotonic(), 0.2, within)
    return all(t is not None for t in times)


async def measure_load_state(
    session: aiohttp.ClientSession,
    peers: Sequence[Peer],
    nodes: Sequence[str],
    args: argparse.Namespace,
) -> list[StateCost]:
    """Baseline (all nodes, no calls), then `--functions` active functions at `--rate`."""
    current = await node_states(session, peers[0]) or {}
    missing = [n for n in nodes if n not in current]
    for i in range(0, len(missing), 10):
        batch = missing[i : i + 10]
        await asyncio.gather(
            *(change_node(session, peers[j % len(peers)], n) for j, n in enumerate(batch))
        )
    if not await all_online(session, peers, nodes, 60.0):
        raise RuntimeError(f"not all {len(nodes)} nodes came online on every peer")
    waited = await settle_gossip(session, peers, 3.0, args.settle)
    log(
        f"  N={len(peers)}: {len(nodes)} nodes online everywhere, gossip settled after "
        f"{waited:.0f} s; baseline for {args.window} s"
    )
    baseline = await gossip_cost(session, peers, "no calls (baseline)", args.window)
    log(
        f"  load: {args.functions} functions at {args.rate:g} calls/s; "
        f"{args.warm} s warm-up, then {args.window} s measured"
    )
    stats = LoadStats()
    load = asyncio.ensure_future(
        paced_load(
            peers,
            args.functions,
            args.rate,
            args.warm + args.window + 5,
            args.concurrency,
            stats,
        )
    )
    await asyncio.sleep(args.warm)
    loaded = await gossip_cost(
        session, peers, f"{args.functions:,} functions, ~{args.rate:g} calls/s", args.window
    )
    await load
    loaded.load = stats
    return [baseline, loaded]


# --- one cluster size ---------------------------------------------------------------------


@dataclass
class SizeResult:
    n: int
    adds: AddResult | None = None
    fails: list[FailTrial] = field(default_factory=list)
    costs: list[StateCost] = field(default_factory=list)


async def run_size(
    n: int,
    args: argparse.Namespace,
    nodes: Sequence[str],
    workdir: Path,
    group: ProcessGroup,
) -> SizeResult:
    result = SizeResult(n)
    extra = [f"-hc-interval={args.hc_interval}"] if args.hc_interval else []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        log(f"N={n}: starting {n} peers")
        peers = await start_peers(
            group, n, workdir / f"n{n}", session, prefix=f"n{n}p", extra=extra
        )
        try:
            log(f"N={n}: {args.changes} node additions")
            result.adds = await measure_adds(
                session, peers, nodes[: args.changes], args.poll, args.add_timeout
            )
            if n in args.fail_sizes and args.trials > 0:
                log(f"N={n}: node deaths, {args.trials} trial(s) of {', '.join(args.modes)}")
                result.fails = await measure_failures(session, group, peers, args)
        finally:
            for p in peers:
                if p.proc.popen.poll() is not None:
                    code = p.proc.popen.returncode
                    log(f"peer {p.name} exited early ({code}):\n{p.proc.log_tail()}")
    return result


async def run_load(
    n: int,
    args: argparse.Namespace,
    nodes: Sequence[str],
    workdir: Path,
    group: ProcessGroup,
) -> SizeResult:
    """Figure 3 on fresh peers: no earlier calls linger in their load figures."""
    result = SizeResult(n)
    extra = [f"-hc-interval={args.hc_interval}"] if args.hc_interval else []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        log(f"N={n}: starting {n} fresh peers for the load figures")
        peers = await start_peers(
            group, n, workdir / f"L{n}", session, prefix=f"L{n}p", extra=extra
        )
        result.costs = await measure_load_state(session, peers, nodes, args)
    return result


async def main_async(args: argparse.Namespace, workdir: Path) -> list[SizeResult]:
    results = []
    fnsim_args = [
        "--cold-start-ms=1",
        "--default-ms=1",
        "--memory-mb=65536",
        "--idle-timeout-s=600",
    ]
    count = max(args.nodes, args.changes)
    with ProcessGroup(workdir, nice=args.nice) as nodes_group:
        halves = [count - count // 2, count // 2] if count > 1 else [count]
        procs = [
            spawn_fnsim(nodes_group, f"fnsim{i}", c, fnsim_args) for i, c in enumerate(halves) if c
        ]
        sims = [fnsim_addresses(p, c) for p, c in zip(procs, [c for c in halves if c], strict=True)]
        nodes = [a for s in sims for a in s.addresses]
        log(f"{len(nodes)} Fn nodes up in {len(sims)} fnsim process(es)")
        for n in args.sizes:
            with ProcessGroup(workdir, nice=args.nice) as group:
                results.append(await run_size(n, args, nodes, workdir, group))
        for n in args.load_sizes:
            with ProcessGroup(workdir, nice=args.nice) as group:
                results.append(await run_load(n, args, nodes, workdir, group))
    return results


# --- report ---------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 2) -> str:
    return "timeout" if x is None else f"{x:.{digits}f}"


def _pct(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPU(s), {cpu}, Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average at the end "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )


def print_report(results: Sequence[SizeResult], argv: Sequence[str], elapsed: float) -> None:
    print(f"\n# bench/cluster: {time.strftime('%Y-%m-%d %H:%M %Z')}, {machine()}")
    print(f"# command: python -m bench.cluster {shlex.join(argv)}".rstrip())
    print(f"# run time {elapsed:.0f} s\n")

    print("## 1. PUT on one peer -> node online in GET /1/lb/nodes on every peer (ms)\n")
    print("| N | changes | p50 | p99 | max | first peer p50 | PUT answer p50 | p99 | timeouts "
          "| errors |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        a = r.adds
        if a is None or not a.put_s:
            continue
        ms = [x * 1000 for x in a.all_s] or [float("nan")]
        first = [x * 1000 for x in a.first_s] or [float("nan")]
        put = [x * 1000 for x in a.put_s]
        print(
            f"| {r.n} | {len(a.put_s)} | {_pct(ms, 0.5):.0f} | {_pct(ms, 0.99):.0f} "
            f"| {max(ms):.0f} | {_pct(first, 0.5):.0f} | {_pct(put, 0.5):.0f} "
            f"| {_pct(put, 0.99):.0f} | {a.timeouts} | {a.errors} |"
        )

    fails = [(r.n, t) for r in results for t in r.fails]
    if fails:
        print("\n## 2. Fn node killed (SIGKILL) -> not online on any peer (s)\n")
        print("| N | mode | trials | from kill: median | max | first peer: median "
              "| from first call after kill: median | max | timeouts | failed calls |")  # fmt: skip
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in dict.fromkeys(n for n, _ in fails):
            for mode in MODES:
                ts = [t for m, t in fails if m == n and t.mode == mode]
                if not ts:
                    continue
                kill = [t.from_kill for t in ts if t.from_kill is not None]
                first = [t.first_peer for t in ts if t.first_peer is not None]
                after_call = [
                    t.from_kill - t.first_call
                    for t in ts
                    if t.from_kill is not None and t.first_call is not None
                ]
                med = _med(kill)
                print(
                    f"| {n} | {mode} | {len(ts)} | {med} | {_max(kill)} | {_med(first)} "
                    f"| {_med(after_call)} | {_max(after_call)} "
                    f"| {sum(t.from_kill is None for t in ts)} | {sum(t.errors for t in ts)} |"
                )

    for r in results:
        if not r.costs:
            continue
        print(f"\n## 3. Gossip and memory per peer, N={r.n}, all nodes in the list\n")
        print("| state | peer | UDP pkts/s out | UDP B/s out | UDP pkts/s in | UDP B/s in "
              "| TCP B/s (both ways) | RSS MB | peak RSS MB | CPU (cores) |")  # fmt: skip
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in r.costs:
            for p in c.peers:
                print(
                    f"| {c.label} | {p.name} | {p.udp_pkts_out:.1f} | {p.udp_bytes_out:,.0f} "
                    f"| {p.udp_pkts_in:.1f} | {p.udp_bytes_in:,.0f} | {p.tcp_bytes:,.0f} "
                    f"| {p.rss_mb:.1f} | {p.hwm_mb:.1f} | {p.cpu:.2f} |"
                )
        for c in r.costs:
            if c.load is not None:
                ld = c.load
                print(
                    f"\nLoad: {ld.sent:,} calls in {ld.ended - ld.started:.1f} s "
                    f"({ld.rate:,.0f}/s), {ld.ok:,} answered 200, {ld.errors:,} errors."
                )


def _med(xs: Sequence[float]) -> str:
    return f"{statistics.median(xs):.2f}" if xs else "-"


def _max(xs: Sequence[float]) -> str:
    return f"{max(xs):.2f}" if xs else "-"


# --- command line -----------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.cluster", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    p.add_argument("--sizes", type=_ints, default=[3, 10], help="cluster sizes N (3,10)")
    p.add_argument("--changes", type=int, default=100, help="node additions per size (100)")
    p.add_argument("--fail-sizes", type=_ints, default=[3, 10], help="sizes for figure 2")
    p.add_argument("--trials", type=int, default=5, help="node deaths per mode (5)")
    p.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES))
    p.add_argument("--load-sizes", type=_ints, default=[3, 10], help="N for figure 3 (3,10)")
    p.add_argument("--nodes", type=int, default=200, help="Fn nodes for figure 3 (200)")
    p.add_argument("--functions", type=int, default=10_000, help="distinct functions (10000)")
    p.add_argument("--rate", type=float, default=1000.0, help="calls/s in figure 3 (1000)")
    p.add_argument("--concurrency", type=int, default=64, help="load generator's calls in flight")
    p.add_argument("--warm", type=float, default=20.0, help="s of load before measuring (20)")
    p.add_argument("--window", type=float, default=20.0, help="s between counter reads (20)")
    p.add_argument("--settle", type=float, default=60.0, help="max s for backlogs to drain")
    p.add_argument("--poll", type=float, default=0.01, help="s between polls of a peer (0.01)")
    p.add_argument("--call-interval", type=float, default=0.02, help="s between calls (fig 2)")
    p.add_argument("--hc-interval", type=float, default=0.0, help="-hc-interval (0: default 3)")
    p.add_argument("--add-timeout", type=float, default=10.0, help="s per addition (10)")
    p.add_argument("--fail-timeout", type=float, default=20.0, help="s per node death (20)")
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of every process of the run, the bench's own included (-10 as root: "
        "priority over other work on a shared machine, as bench/proxy does)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the kill phases (1)")
    p.add_argument("--quick", action="store_true", help="a ~40 s smoke run at N=3")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, state)")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.fail_sizes, args.load_sizes = [3], [3], [3]
        args.changes, args.trials, args.nodes, args.functions = 10, 1, 20, 500
        args.rate, args.warm, args.window, args.settle = 200.0, 3.0, 2.0, 6.0
    args.hc_interval_s = args.hc_interval or 3.0
    args.rng = random.Random(args.seed)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="fnlb-bench-cluster-"))
    if args.nice:
        set_priority(os.getpid(), args.nice)
    t0 = time.monotonic()
    try:
        results = uvloop.run(main_async(args, workdir))
    finally:
        if args.keep:
            log(f"logs and state kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_report(results, argv, time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
