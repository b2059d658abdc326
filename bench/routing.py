"""Routing quality (fnlb issue 5): cold starts and latency of four ways to route, one trace.

For each configuration the run starts five fresh emulated Fn nodes (`fnlb fnsim`: 1 GiB each
by default (`--memory-mb`), 128 MB per container, so 8 containers per node; 300 ms cold
start; an idle container lives `--idle-timeout-s`), three load balancers in front of them,
and replays the same seeded trace (bench/routing_workload.py: `--functions` functions with
Zipf rates summing to `--rate` calls/s, executions of 10-100 ms (`--exec-ms`), the function
of rank `--burst-rank` 10x for 15 s), each call to one of the three
balancers drawn at random, as DNS spreads clients. Configurations:

- `haproxy-roundrobin`: three HAProxy instances, `balance roundrobin`;
- `haproxy-bounded`: three HAProxy instances, `balance uri`, `hash-type consistent`,
  `hash-balance-factor 125` (consistent hashing with bounded load);
- `fnlb-classic`: three independent `fnlb serve -routing=classic` (the original fnlb's
  algorithm; the original could not share state, so three stand alone);
- `fnlb`: a 3-peer fnlb cluster with its default routing;
- `fnlb-warm-wait` (only when named in `--configs`): the `fnlb` cluster with
  `-warm-wait=300ms` (wait for warm, docs/routing.md; off by default, so `fnlb` is the
  row without it); after its replay the peers' held calls are read from /metrics and
  printed;
- `pooled-memory` (a reference, not a contender): no balancer, the calls go straight to
  ONE node holding all five nodes' memory. Its cold fraction is what Fn's own container
  cache (least recently used idle containers evicted first) achieves when nothing is split:
  a router that sends each function to one node does no better; fnlb's admission (issue 16:
  the tail's calls kept off the popular functions' nodes) is what beats it.

Printed per configuration: calls counted (after `--warm` s), the cold-start fraction (calls
that waited for a container start, as the node says in `Fnsim-Cold`), p50/p99 latency seen by
the client, the p99 of the nodes' part of it (the wait for a container, a cold start
included, as the node says in `Xxx-Fxlb-Wait`, plus the execution: what routing decides; the
rest is the balancers', the nodes' and the client's CPU on one machine), errors (any answer
but 200, or none), mean nodes per function (distinct nodes that served each function) and
the busiest node's share of the calls. Also the workload's floor: the share of calls whose
function had been idle longer than the idle timeout, cold under any routing. With
`--plot FILE` a PNG of the latency distributions (needs matplotlib).

The idle timeout is scaled down from Fn's 30 s to 15 s and the rate doubled to match, so the
gaps between a function's calls keep their proportion to the idle timeout while a run takes
half as long; execution and cold-start times are not scaled.

Rerun (repository root; about 10 minutes on 2 cores):

    python -m bench.routing --nice=-10 --plot docs/routing-latency.png
    python -m bench.routing --quick          # a ~1 minute smoke run, tiny trace
    python -m bench.routing --memory-mb 2048 --functions 300 --zipf-s 1.1 --rate 120 \
        --idle-timeout-s 30 --exec-ms 20,20 --burst-rank 0    # issue 16's roomy profile
    python -m bench.routing --nice=-10 --configs fnlb,fnlb-warm-wait,pooled-memory \
        --memory-mb 2048 --functions 300 --zipf-s 1.1 --rate 120 \
        --idle-timeout-s 30 --exec-ms 20,20 --burst-rank 0    # fnlb with and without wait
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import shlex
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import aiohttp

if __package__ in (None, ""):  # run as a file: make `bench` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._cluster_procs import REPO_ROOT, repo_env, start_peers
from bench._configs import haproxy_cfg
from bench._procs import ProcessGroup, StartError, free_port, set_priority, wait_http_ok
from bench.routing_workload import (
    Call,
    Outcome,
    Row,
    WorkloadSpec,
    centred_spec,
    floor_fraction,
    make_trace,
    summarise,
)
from fnlb.goduration import parse_go_duration

HOST = "127.0.0.1"
CONFIGS = ("haproxy-roundrobin", "haproxy-bounded", "fnlb-classic", "fnlb", "pooled-memory")
REFERENCES = frozenset({"pooled-memory"})
EXTRA_CONFIGS = ("fnlb-warm-wait",)
"""Run only when named in --configs: `fnlb-warm-wait` is `fnlb` with `-warm-wait=300ms`
(wait for warm, issue 16 clause 2; docs/routing.md), in the same run as the rows it is
compared with."""
WARM_WAIT_FLAG = "-warm-wait=300ms"
LBS = 3
Log = Callable[[str], None]


def node_addresses(count: int, first_port: int = 18080) -> list[str]:
    """`count` Fn node addresses, 127.0.1.1 up, on one port free on all of them.

    The same addresses in every configuration and every run: rendezvous and jump hashing
    place functions by the nodes' names, so addresses drawn afresh would make each
    configuration's placement a different lottery."""
    hosts = [f"127.0.1.{i + 1}" for i in range(count)]
    for port in range(first_port, first_port + 1000):
        try:
            for host in hosts:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    # as asyncio's servers do: a port in TIME_WAIT from the last run is free
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((host, port))
        except OSError:
            continue
        return [f"{host}:{port}" for host in hosts]
    raise StartError(f"no port from {first_port} free on all of {', '.join(hosts)}")


def start_haproxies(
    group: ProcessGroup, workdir: Path, nodes: Sequence[str], balance: str, factor: int | None
) -> list[str]:
    """Three HAProxy processes, one port each; their base URLs."""
    urls = []
    for i in range(LBS):
        port = free_port()
        cfg = workdir / f"haproxy-{balance}-{i}.cfg"
        cfg.write_text(haproxy_cfg(port, list(nodes), balance=balance, hash_balance_factor=factor))
        group.start(f"haproxy-{balance}-{i}", ["haproxy", "-db", "-f", str(cfg)])
        urls.append(f"http://{HOST}:{port}")
    return urls


def _all_online(mgmt_url: str, count: int) -> Callable[[], bool]:
    def check() -> bool:
        with urllib.request.urlopen(f"{mgmt_url}/1/lb/nodes", timeout=2.0) as r:
            nodes = json.load(r)["nodes"]
        return sum(1 for state in nodes.values() if state == "online") >= count

    return check


def _wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise StartError(f"{what} not reached within {timeout:.0f}s")


def start_fnlb_classic(group: ProcessGroup, nodes: Sequence[str]) -> list[str]:
    """Three independent fnlb processes routing as the original did."""
    urls = []
    for i in range(LBS):
        listen, mgmt = free_port(), free_port()
        cmd = [
            sys.executable, "-m", "fnlb", "serve", f"-listen={HOST}:{listen}",
            f"-mgmt-listen={HOST}:{mgmt}", "-nodes=" + ",".join(nodes), "-routing=classic",
            "-log-level=warning",
        ]  # fmt: skip
        proc = group.start(f"fnlb-classic-{i}", cmd, cwd=REPO_ROOT, env=repo_env())
        wait_http_ok(proc, f"http://{HOST}:{mgmt}/1/lb/nodes", 60.0)
        _wait(_all_online(f"http://{HOST}:{mgmt}", len(nodes)), f"fnlb-classic-{i}: nodes online")
        urls.append(f"http://{HOST}:{listen}")
    return urls


async def start_fnlb_cluster(
    group: ProcessGroup, workdir: Path, nodes: Sequence[str], extra: Sequence[str]
) -> tuple[list[str], list[str]]:
    """A 3-peer fnlb cluster with its default routing (plus `extra` flags): the peers' call
    URLs and management URLs."""
    async with aiohttp.ClientSession() as session:
        peers = await start_peers(
            group, LBS, workdir, session, prefix="fnlb", extra=["-nodes=" + ",".join(nodes), *extra]
        )
    for p in peers:
        await asyncio.to_thread(
            _wait, _all_online(p.mgmt_url, len(nodes)), f"{p.name}: nodes online"
        )
    return [p.call_url for p in peers], [p.mgmt_url for p in peers]


async def warm_wait_holds(mgmt_urls: Sequence[str]) -> dict[str, float]:
    """The peers' wait-for-warm counts summed (`fnlb_warm_wait_*` in /metrics): held calls by
    how the hold ended, and the seconds held in all (`seconds`)."""
    out: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        for url in mgmt_urls:
            async with session.get(f"{url}/metrics") as r:
                text = await r.text()
            for line in text.splitlines():
                if line.startswith("fnlb_warm_wait_holds_total{"):
                    outcome = line.split('"')[1]
                    out[outcome] = out.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
                elif line.startswith("fnlb_warm_wait_hold_seconds_total "):
                    out["seconds"] = out.get("seconds", 0.0) + float(line.rsplit(" ", 1)[1])
    return out


async def placement_digests(mgmt_urls: Sequence[str]) -> list[str]:
    """Each peer's placement as `GET /1/lb/cluster` reports it: "epoch:digest", or "-" when
    it has none (equal digests: the peers hold the same placement; docs/routing.md, After a
    restart)."""
    out = []
    async with aiohttp.ClientSession() as session:
        for url in mgmt_urls:
            async with session.get(f"{url}/1/lb/cluster") as r:
                placement = (await r.json()).get("placement") or {}
            digest = placement.get("digest")
            out.append(f"{placement.get('epoch')}:{digest}" if digest else "-")
    return out


async def replay(
    calls: Sequence[Call], urls: Sequence[str], seed: int, timeout_s: float
) -> list[Outcome]:
    """Send every call at its time (open loop) to a balancer drawn at random; what came back."""
    rng = random.Random(seed)
    targets = [urls[int(rng.random() * len(urls))] for _ in calls]
    outcomes: list[Outcome] = []
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(call: Call, url: str) -> None:
            started = time.perf_counter()
            try:
                async with session.get(url + call.path) as r:
                    await r.read()
                    outcomes.append(
                        Outcome(
                            call,
                            r.status,
                            time.perf_counter() - started,
                            r.headers.get("Fnsim-Cold") == "true",
                            r.headers.get("Fnsim-Node", ""),
                            _node_s(r.headers.get("Xxx-Fxlb-Wait"), call),
                        )
                    )
            except (TimeoutError, aiohttp.ClientError, OSError):
                outcomes.append(Outcome(call, 0, time.perf_counter() - started, False, ""))

        tasks = []
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.5
        for call, url in zip(calls, targets, strict=True):
            delay = t0 + call.at_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(call, url)))
        await asyncio.gather(*tasks)
    return outcomes


def _node_s(waited: str | None, call: Call) -> float:
    """The node's part of a call's latency: its wait for a container (fnsim's Go duration,
    the cold start included) and the call's execution; nan without the header."""
    if waited is None:
        return math.nan
    try:
        return parse_go_duration(waited) + call.exec_ms / 1000.0
    except ValueError:
        return math.nan


async def run_config(
    name: str,
    args: argparse.Namespace,
    calls: Sequence[Call],
    all_nodes: Sequence[str],
    workdir: Path,
    log: Log,
) -> list[Outcome]:
    """Fresh nodes and balancers for `name`, the trace replayed through them, all stopped."""
    cfg_dir = workdir / name
    cfg_dir.mkdir()
    pooled = name == "pooled-memory"
    fnsim_args = [
        f"--memory-mb={args.memory_mb * (args.nodes if pooled else 1)}", "--fn-memory-mb=128",
        "--cold-start-ms=300", f"--idle-timeout-s={args.idle_timeout_s:g}", "--max-wait-s=15",
        f"--seed={args.seed}",
    ]  # fmt: skip
    with ProcessGroup(cfg_dir, nice=args.nice) as group:
        nodes = all_nodes[:1] if pooled else all_nodes
        for i, address in enumerate(nodes):
            proc = group.start(
                f"{name}-fnsim-{i}",
                [sys.executable, "-m", "fnlb", "fnsim", f"--listen={address}", *fnsim_args],
                cwd=REPO_ROOT,
                env=repo_env(),
            )
            wait_http_ok(proc, f"http://{address}/version", 30.0)
        mgmt_urls: list[str] = []
        if pooled:
            urls = [f"http://{nodes[0]}"]
        elif name == "haproxy-roundrobin":
            urls = start_haproxies(group, cfg_dir, nodes, "roundrobin", None)
        elif name == "haproxy-bounded":
            urls = start_haproxies(group, cfg_dir, nodes, "uri", 125)
        elif name == "fnlb-classic":
            urls = start_fnlb_classic(group, nodes)
        else:
            flags = (
                [*args.fnlb_flag, WARM_WAIT_FLAG] if name == "fnlb-warm-wait" else args.fnlb_flag
            )
            urls, mgmt_urls = await start_fnlb_cluster(group, cfg_dir, nodes, flags)
        await asyncio.sleep(1.0)  # HAProxy binds after its config check; fnlb's first checks
        started = time.monotonic()
        outcomes = await replay(calls, urls, args.seed, args.timeout)
        log(f"# {name}: {len(outcomes)} calls replayed in {time.monotonic() - started:.0f}s")
        if mgmt_urls:
            digests = await placement_digests(mgmt_urls)
            same = "the same" if len(set(digests)) == 1 else "DIFFERENT"
            log(f"# {name}: {same} placements at the end: {' '.join(digests)}")
        if name == "fnlb-warm-wait":
            held = await warm_wait_holds(mgmt_urls)
            seconds = held.pop("seconds", 0.0)
            counts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(held.items()))
            log(
                f"# {name}: {sum(held.values()):.0f} calls held ({counts}), "
                f"{1000 * seconds / max(len(outcomes), 1):.2f} ms held per call on average"
            )
    return outcomes


def table(rows: dict[str, Row], floor: float) -> list[str]:
    lines = [
        "| configuration | calls | cold % | p50 ms | p99 ms | p99 at the nodes ms "
        "| p99 of the rest ms | errors | nodes per function | busiest node % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r.calls} | {100 * r.cold_fraction:.1f} | {r.p50_ms:.0f} | "
            f"{r.p99_ms:.0f} | {r.node_p99_ms:.0f} | {r.rest_p99_ms:.1f} | {r.errors} | "
            f"{r.nodes_per_function:.2f} | {100 * r.busiest_share:.1f} |"
        )
    lines.append(f"| workload floor (cold under any routing) | | {100 * floor:.1f} | | | | | | | |")
    return lines


def verdict(rows: dict[str, Row]) -> list[str]:
    """fnlb's default against the best other configuration, as issue 5 states its targets."""
    if "fnlb" not in rows or len(rows) < 2:
        return []
    ours = rows["fnlb"]
    others = {
        k: v
        for k, v in rows.items()
        if k != "fnlb" and k not in REFERENCES and k not in EXTRA_CONFIGS  # fnlb's own variants
    }
    if not others:
        return []
    best_cold = min(others, key=lambda k: others[k].cold_fraction)
    best_p99 = min(others, key=lambda k: others[k].p99_ms)
    ratio = ours.cold_fraction / others[best_cold].cold_fraction
    return [
        f"cold fraction: fnlb {ratio:.2f}x the best other ({best_cold}); target <= 0.70x",
        f"p99: fnlb {ours.p99_ms:.0f} ms, best other {others[best_p99].p99_ms:.0f} ms "
        f"({best_p99}); target: no worse",
        f"errors: fnlb {ours.errors}; target 0",
    ]


def plot(path: Path, results: dict[str, list[Outcome]], after_s: float, title: str) -> None:
    """Latency distributions (empirical CDF, log time axis) of every configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for name, outcomes in results.items():
        lat = sorted(1000 * o.latency_s for o in outcomes if o.call.at_s >= after_s)
        if not lat:
            continue
        ys = [(i + 1) / len(lat) for i in range(len(lat))]
        ax.step(lat, ys, where="post", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("latency seen by the client, ms (log)")
    ax.set_ylabel("share of calls at or below")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def spec_of(args: argparse.Namespace) -> WorkloadSpec:
    """The trace of these arguments: the burst in the middle of the counted part."""
    spec = centred_spec(args.functions, args.rate, args.zipf_s, args.duration, args.warm, args.seed)
    return replace(
        spec,
        exec_ms=args.exec_ms,
        burst_rank=min(args.burst_rank, args.functions - 1),
    )


async def main_async(args: argparse.Namespace, workdir: Path, log: Log) -> int:
    spec = spec_of(args)
    calls = make_trace(spec)
    floor = floor_fraction(calls, args.idle_timeout_s, args.warm)
    log(
        f"# trace: {len(calls)} calls, {spec.functions} functions, {spec.total_rate:g} calls/s, "
        f"{spec.duration_s:g}s (first {args.warm:g}s not counted), burst of rank "
        f"{spec.burst_rank} x{spec.burst_factor:g} at {spec.burst_at_s:g}s for {spec.burst_s:g}s"
    )
    nodes = node_addresses(args.nodes)
    log(f"# Fn nodes: {', '.join(nodes)} (fresh for each configuration)")
    results: dict[str, list[Outcome]] = {}
    for name in args.configs:
        results[name] = await run_config(name, args, calls, nodes, workdir, log)
    rows = {name: summarise(out, args.warm) for name, out in results.items()}
    for line in table(rows, floor):
        log(line)
    log("")
    for line in verdict(rows):
        log(line)
    if args.plot:
        title = (
            f"{spec.functions} functions, {spec.total_rate:g} calls/s, 5 nodes x 8 containers, "
            f"cold start 300 ms, idle {args.idle_timeout_s:g} s"
        )
        plot(Path(args.plot), results, args.warm, title)
        log(f"# plot: {args.plot}")
    return 0


def _exec_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected low,high in ms, e.g. 20,20") from None
    return low, high


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.routing", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    p.add_argument("--configs", type=lambda s: s.split(","), default=list(CONFIGS))
    p.add_argument("--functions", type=int, default=200, help="distinct functions (200)")
    p.add_argument("--rate", type=float, default=40.0, help="calls/s outside the burst (40)")
    p.add_argument("--zipf-s", type=float, default=1.5, help="Zipf exponent of the rates (1.5)")
    p.add_argument("--duration", type=float, default=120.0, help="s of trace (120)")
    p.add_argument("--warm", type=float, default=30.0, help="first s not counted (30)")
    p.add_argument("--idle-timeout-s", type=float, default=15.0, help="fnsim idle timeout (15)")
    p.add_argument("--nodes", type=int, default=5, help="Fn nodes (5)")
    p.add_argument("--memory-mb", type=int, default=1024, help="per node (1024: 8 containers)")
    p.add_argument(
        "--exec-ms",
        type=_exec_range,
        default=(10.0, 100.0),
        help="low,high ms: executions log-uniform per function (10,100)",
    )
    p.add_argument("--burst-rank", type=int, default=1, help="rank that bursts, 0 = hottest (1)")
    p.add_argument("--seed", type=int, default=1, help="seed of the trace and LB draws (1)")
    p.add_argument("--timeout", type=float, default=30.0, help="client timeout per call, s")
    p.add_argument(
        "--fnlb-flag", action="append", default=[], help="extra flag for the fnlb cluster peers"
    )
    p.add_argument("--plot", default="", help="write a PNG of the latency distributions here")
    p.add_argument("--nice", type=int, default=0, help="niceness of every process (-10 as root)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--quick", action="store_true", help="a ~1 minute smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.functions, args.rate, args.duration, args.warm = 40, 20.0, 12.0, 4.0
    known = (*CONFIGS, *EXTRA_CONFIGS)
    unknown = [c for c in args.configs if c not in known]
    if unknown:
        p.error(f"unknown configuration {', '.join(unknown)}; known: {', '.join(known)}")
    if "haproxy" in ",".join(args.configs) and shutil.which("haproxy") is None:
        p.error("haproxy is not installed (Debian: apt-get install haproxy)")
    if args.memory_mb < 128:
        p.error("--memory-mb must hold at least one 128 MB container")
    if not 0 <= args.warm < args.duration:
        p.error("--warm must be >= 0 and shorter than --duration")
    try:
        spec_of(args).check()
    except ValueError as e:
        p.error(str(e))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.nice:
        set_priority(os.getpid(), args.nice)
    print(
        f"# command: python -m bench.routing {shlex.join(sys.argv[1:] if argv is None else argv)}"
    )
    print(f"# {platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    try:
        return asyncio.run(main_async(args, workdir, lambda line: print(line, flush=True)))
    finally:
        if args.keep:
            print(f"# kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
