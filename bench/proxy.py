"""fnlb's proxy overhead against HAProxy and a plain aiohttp pass-through, in one run.

Starts on loopback: emulated Fn nodes (nginx, or aiohttp when nginx is missing), HAProxy
(`balance uri`, `hash-type consistent`, nbthread 1), the simplest aiohttp pass-through
proxy (bench/aiohttp_passthrough.py) and `fnlb serve`, all pointed at the same nodes. wrk
loads each in turn with POSTs spread over many function keys: one warm-up run each, then
`--repeats` rounds interleaved (A B C D A B C D ...) so drift in the machine's load hits all
alike. Prints the median requests/s and p50/p99 latency of each, and each row's ratio to
the pass-through and to HAProxy computed from the same run. The target (fnlb issue 2):
fnlb >= 0.9x the pass-through.

On a machine with 2+ CPUs the proxies are pinned to the first CPU and wrk plus the nodes to
the others (taskset), so a proxy never competes with its own load generator; `--no-pin`
turns that off. Everything binds 127.0.0.1; every process is stopped by its PID at the end.

Rerun (from the repository root):

    python -m bench.proxy                      # 10 s x 3 rounds, 32 connections
    python -m bench.proxy --repeats=5 --nice=-10 --fnlb-cluster   # docs/benchmarks.md
    python bench/proxy.py --quick              # 1 s x 1 round: does everything start?

Besides req/s and latency it records each server's CPU time per call (from /proc), the
figure that holds up when other work shares the machine; `--nice=-10` (root) keeps that
other work from stealing the proxies' CPU in the first place.

A/B runs of fnlb itself: `--variant 'NAME=ARGS'` adds an fnlb row started with ARGS (repeat
for more), `NAME@DIR=ARGS` runs that row from the source tree DIR (another revision, e.g.
`git archive main | tar -x -C /tmp/fnlb-main`), `NAME%PYTHON=ARGS` runs it with another
Python interpreter (one with fnlb's dependencies installed: the CPython build is part of
fnlb's CPU per call), and `--only-fnlb` leaves out the yardsticks.
Every row is loaded in the same interleaved rounds; each variant's CPU per call is reported
as a ratio to the plain fnlb row's, per round and as the median. The cost of observability
(docs/observability.md):

    python -m bench.proxy --only-fnlb --repeats=5 \
        --variant 'metrics off=-call-metrics=false' \
        --variant 'tracing on=-zipkin=http://127.0.0.1:9/api/v2/spans' \
        --variant 'main@/tmp/fnlb-main='
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._configs import haproxy_cfg, nginx_conf, nginx_proxy_conf
from bench._procs import (
    ProcessGroup,
    Started,
    StartError,
    autogroup_nice,
    free_port,
    pinned,
    set_priority,
    tree_cpu_seconds,
    tree_rss_kb,
    wait_http_ok,
)
from bench._wrk import WrkResult, lua_script, run_wrk

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"
APP = "benchapp"
TARGET_RATIO = 0.9

BACKEND = "backend alone"
HAPROXY = "haproxy"
HAPROXY_MT = "haproxy (default nbthread)"
PASSTHROUGH = "aiohttp pass-through"
NGINX_PROXY = "nginx (proxy, 1 process)"
FNLB = "fnlb"
FNLB_CLUSTER = "fnlb (cluster mode, 1 peer)"
FNLB_AIOHTTP = "fnlb (-data-plane=aiohttp)"
FNLB_WORKERS = "fnlb -workers"


@dataclass(frozen=True)
class Run:
    """One timed wrk run against a target, and the CPU time its server process used."""

    wrk: WrkResult
    cpu_s: float

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu_s * 1e6 / self.wrk.requests if self.wrk.requests else 0.0

    @property
    def cpu_share(self) -> float:
        """Server CPU time over wall time: near 1.0 means the server was the bottleneck."""
        return self.cpu_s / self.wrk.seconds if self.wrk.seconds else 0.0


@dataclass
class Target:
    """One configuration under load: its row name, the URL wrk loads, the process serving it."""

    name: str
    url: str
    proc: Started
    nodes_seen: int | None = None
    runs: list[Run] = field(default_factory=list)

    def median(self, figure: Callable[[Run], float]) -> float:
        return statistics.median(figure(r) for r in self.runs)

    def median_rps(self) -> float:
        return self.median(lambda r: r.wrk.rps)

    def errors(self) -> int:
        return sum(r.wrk.errors for r in self.runs)


@dataclass(frozen=True)
class CpuPlan:
    """Which CPUs the proxies get and which wrk and the nodes get (None: not pinned)."""

    proxy: list[int] | None
    load: list[int] | None

    def describe(self) -> str:
        if self.proxy is None:
            return "not pinned"
        return f"proxy on CPU {_cpus(self.proxy)}; wrk and nodes on CPU {_cpus(self.load)}"


def _cpus(cpus: Sequence[int] | None) -> str:
    return ",".join(str(c) for c in cpus or [])


def cpu_plan(pin: bool) -> CpuPlan:
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2 or shutil.which("taskset") is None:
        return CpuPlan(None, None)
    return CpuPlan([cpus[0]], cpus[1:])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.proxy",
        description="fnlb's proxy overhead against HAProxy and an aiohttp pass-through.",
    )
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--warmup", type=int, default=3, help="seconds of warm-up each (default 3)")
    p.add_argument("--keys", type=int, default=200, help="distinct function paths (default 200)")
    p.add_argument("--nodes", type=int, default=3, help="emulated Fn nodes (default 3)")
    p.add_argument(
        "--backend",
        choices=("auto", "nginx", "aiohttp"),
        default="auto",
        help="what plays the Fn nodes; auto: nginx if installed (default auto)",
    )
    p.add_argument(
        "--haproxy-mt",
        action="store_true",
        help="also run HAProxy with its default nbthread (implies --no-pin for fairness)",
    )
    p.add_argument(
        "--fnlb-cluster",
        action="store_true",
        help="also run fnlb in cluster mode (gossip on, a cluster of one peer)",
    )
    p.add_argument(
        "--fnlb-aiohttp",
        action="store_true",
        help="also run fnlb on its aiohttp data plane (-data-plane=aiohttp), the earlier path",
    )
    p.add_argument(
        "--fnlb-workers",
        default="",
        metavar="N,N",
        help="also run fnlb with -workers N for each N listed (e.g. 2,4), unpinned: its "
        "workers share every CPU with wrk and the nodes",
    )
    p.add_argument(
        "--paced",
        action="store_true",
        help="then load each proxy at half its measured maximum rate (wrk pacing each "
        "connection) and the backend alone at the same rate: the p99 a proxy adds",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the benchmark and every process it starts; negative (root only) "
        "keeps other work on a shared machine from stealing the proxies' CPU (default 0)",
    )
    p.add_argument(
        "--fnlb-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for 'fnlb serve' (repeatable), e.g. --fnlb-arg=-hc-interval=1",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if fnlb is below {TARGET_RATIO}x the pass-through",
    )
    p.add_argument(
        "--quick", action="store_true", help="1 s runs, 1 round, 1 s warm-up: a smoke run"
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME[@DIR][%PYTHON]=ARGS",
        help="another fnlb row: extra 'fnlb serve' ARGS (shell words), run from source tree "
        "DIR and by interpreter PYTHON if given; its CPU per call is compared with the fnlb "
        "row's (repeatable)",
    )
    p.add_argument(
        "--alternate",
        action="store_true",
        help="run every other round in reverse order (A B C, C B A, ...)",
    )
    p.add_argument(
        "--only-fnlb",
        action="store_true",
        help="load only the fnlb rows (no backend-alone, HAProxy or pass-through rows)",
    )
    args = p.parse_args(argv)
    try:
        args.variants = [parse_variant(v) for v in args.variant]
    except ValueError as e:
        p.error(str(e))
    if args.quick:
        args.duration, args.repeats, args.warmup = 1, 1, 1
    for name in ("duration", "connections", "threads", "repeats", "keys", "nodes"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must not be negative")
    try:
        counts = worker_counts(args)
    except ValueError:
        p.error("--fnlb-workers takes numbers, e.g. 2,4")
    if any(n < 1 for n in counts):
        p.error("--fnlb-workers: each count must be at least 1")
    return args


@dataclass(frozen=True)
class Variant:
    name: str
    root: Path
    args: list[str]
    python: str = sys.executable


def parse_variant(spec: str) -> Variant:
    """`NAME[@DIR][%PYTHON]=ARGS` -> a Variant; ValueError saying what is wrong."""
    head, sep, rest = spec.partition("=")
    if not sep or not head.strip():
        raise ValueError(f"--variant {spec!r}: write NAME=ARGS, NAME@DIR=ARGS or NAME%PYTHON=ARGS")
    head, _, python = head.partition("%")
    if python and not os.access(python, os.X_OK):
        raise ValueError(f"--variant {spec!r}: {python} is not an executable interpreter")
    name, _, root = head.partition("@")
    path = Path(root).resolve() if root else REPO_ROOT
    if not (path / "fnlb" / "__main__.py").is_file():
        raise ValueError(f"--variant {spec!r}: {path} holds no fnlb source tree")
    if name.strip() == FNLB:
        raise ValueError(f"--variant {spec!r}: the name {FNLB!r} is the plain row's")
    return Variant(name.strip(), path, shlex.split(rest), python or sys.executable)


def rerun_command(args: argparse.Namespace) -> str:
    """The exact command that repeats this run's configuration."""
    parts = [
        "python",
        "-m",
        "bench.proxy",
        f"--duration={args.duration}",
        f"--connections={args.connections}",
        f"--threads={args.threads}",
        f"--repeats={args.repeats}",
        f"--warmup={args.warmup}",
        f"--keys={args.keys}",
        f"--nodes={args.nodes}",
        f"--backend={args.backend}",
    ]
    parts += ["--haproxy-mt"] if args.haproxy_mt else []
    parts += ["--fnlb-cluster"] if args.fnlb_cluster else []
    parts += ["--fnlb-aiohttp"] if args.fnlb_aiohttp else []
    parts += ["--paced"] if args.paced else []
    parts += [f"--fnlb-workers={args.fnlb_workers}"] if args.fnlb_workers else []
    parts += ["--no-pin"] if args.no_pin else []
    parts += [f"--nice={args.nice}"] if args.nice else []
    parts += [f"--fnlb-arg={a}" for a in args.fnlb_arg]
    parts += [f"--variant={v}" for v in args.variant]
    parts += ["--only-fnlb"] if args.only_fnlb else []
    parts += ["--alternate"] if args.alternate else []
    return shlex.join(parts)


def start_backend(
    kind: str, group: ProcessGroup, ports: list[int], tmp: Path, cpus: list[int] | None
) -> Started:
    if kind == "nginx":
        conf = tmp / "nginx.conf"
        conf.write_text(nginx_conf(ports, tmp))
        (tmp / "nginx-body").mkdir()
        cmd = ["nginx", "-e", str(tmp / "nginx-error.log"), "-p", str(tmp), "-c", str(conf)]
    else:
        cmd = [sys.executable, str(BENCH_DIR / "fn_backend.py"), *map(str, ports)]
    proc = group.start(f"backend-{kind}", pinned(cmd, cpus))
    for port in ports:
        wait_http_ok(proc, f"http://{HOST}:{port}/version", timeout=15)
    return proc


def backend_target(kind: str, proc: Started, port: int) -> Target:
    """The first node loaded directly: the ceiling no proxy in front of it can pass."""
    return Target(f"{BACKEND} ({kind}, 1 node)", f"http://{HOST}:{port}", proc, 1)


def start_haproxy(
    group: ProcessGroup,
    name: str,
    node_ports: list[int],
    tmp: Path,
    cpus: list[int] | None,
    threads: int | None,
) -> Target:
    port = free_port()
    cfg = tmp / f"{name.replace(' ', '_')}.cfg"
    cfg.write_text(haproxy_cfg(port, node_ports, threads=threads))
    check = subprocess.run(
        ["haproxy", "-c", "-q", "-f", str(cfg)], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        raise StartError(f"haproxy rejects {cfg}: {check.stdout}{check.stderr}")
    proc = group.start(name, pinned(["haproxy", "-db", "-f", str(cfg)], cpus))
    return _ready(proc, name, port)


def start_nginx_proxy(
    group: ProcessGroup, node_ports: list[int], tmp: Path, cpus: list[int] | None
) -> Target:
    port = free_port()
    conf = tmp / "nginx-proxy.conf"
    conf.write_text(nginx_proxy_conf(port, node_ports, tmp))
    for sub in ("nginx-proxy-body", "nginx-proxy-temp"):
        (tmp / sub).mkdir(exist_ok=True)
    cmd = ["nginx", "-e", str(tmp / "nginx-proxy-error.log"), "-p", str(tmp), "-c", str(conf)]
    proc = group.start(NGINX_PROXY, pinned(cmd, cpus))
    return _ready(proc, NGINX_PROXY, port)


def start_passthrough(group: ProcessGroup, node_ports: list[int], cpus: list[int] | None) -> Target:
    port = free_port()
    upstreams = [f"http://{HOST}:{p}" for p in node_ports]
    cmd = [sys.executable, str(BENCH_DIR / "aiohttp_passthrough.py"), str(port), *upstreams]
    proc = group.start(PASSTHROUGH, pinned(cmd, cpus))
    return _ready(proc, PASSTHROUGH, port)


def start_fnlb(
    group: ProcessGroup,
    node_ports: list[int],
    cpus: list[int] | None,
    extra: list[str],
    name: str = FNLB,
    root: Path = REPO_ROOT,
    python: str = sys.executable,
) -> Target:
    port, mgmt = free_port(), free_port()
    nodes = ",".join(f"{HOST}:{p}" for p in node_ports)
    cmd = [
        python,
        "-m",
        "fnlb",
        "serve",
        "-listen",
        f"{HOST}:{port}",
        "-mgmt-listen",
        f"{HOST}:{mgmt}",
        "-nodes",
        nodes,
        "-log-level",
        "warning",
        *extra,
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = group.start(name, pinned(cmd, cpus), cwd=root, env=env)
    return _ready(proc, name, port, timeout=40)


def _ready(proc: Started, name: str, port: int, timeout: float = 20) -> Target:
    url = f"http://{HOST}:{port}"
    wait_http_ok(proc, f"{url}/r/{APP}/fn1", timeout=timeout)
    return Target(name, url, proc)


def nodes_reached(url: str, keys: int) -> int | None:
    """How many distinct nodes answer calls to `keys` paths (None: proxy hides the header)."""
    seen: set[str] = set()
    for i in range(1, keys + 1):
        req = urllib.request.Request(f"{url}/r/{APP}/fn{i}", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            node = resp.headers.get("X-Bench-Node")
            if node is not None:
                seen.add(node)
    return len(seen) or None


def machine_summary() -> list[str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"fnlb: {_fnlb_revision()}",
        f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), {model}",
        f"python {platform.python_version()}, {_tool_version(['haproxy', '-v'])}, "
        f"{_tool_version(['nginx', '-v'])}, {_tool_version(['wrk', '-v'])}",
    ]


def _fnlb_revision() -> str:
    """The commit fnlb was measured at, and whether fnlb/ had uncommitted changes."""
    if shutil.which("git") is None:
        return "revision unknown (no git)"
    head = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "log", "-1", "--format=%h %cs"],
        capture_output=True,
        text=True,
        check=False,
    )
    if head.returncode != 0:
        return "revision unknown (not a git checkout)"
    dirty = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "fnlb"],
        capture_output=True,
        text=True,
        check=False,
    )
    changes = " + uncommitted changes in fnlb/" if dirty.stdout.strip() else ""
    return f"commit {head.stdout.strip()}{changes}"


def _tool_version(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return f"{cmd[0]} missing"
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=10)
    out = (done.stdout + done.stderr).strip().splitlines()
    return out[0] if out else cmd[0]


def render_table(targets: list[Target]) -> str:
    """A Markdown table of medians, each row's throughput ratio to the pass-through and HAProxy.

    `CPU µs/call` is the server process's CPU time per answered call and `CPU busy` its CPU
    time over wall time (1.00: one core saturated, so that server was the bottleneck).
    """
    by_name = {t.name: t for t in targets}

    def ratio(t: Target, base: str) -> str:
        ref = by_name.get(base)
        if ref is None or not ref.runs or ref.median_rps() == 0:
            return "-"
        return f"{t.median_rps() / ref.median_rps():.2f}"

    lines = [
        "| config | req/s (median) | p50 ms | p99 ms | errors | nodes hit | CPU µs/call "
        "| CPU busy | x pass-through | x haproxy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in targets:
        if not t.runs:
            continue
        nodes = "-" if t.nodes_seen is None else str(t.nodes_seen)
        lines.append(
            f"| {t.name} | {t.median_rps():,.0f} | {t.median(lambda r: r.wrk.p50_ms):.2f} "
            f"| {t.median(lambda r: r.wrk.p99_ms):.2f} | {t.errors()} | {nodes} "
            f"| {t.median(lambda r: r.cpu_us_per_call):.0f} "
            f"| {t.median(lambda r: r.cpu_share):.2f} "
            f"| {ratio(t, PASSTHROUGH)} | {ratio(t, HAPROXY)} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Verdict:
    """fnlb against the pass-through: throughput ratio and the CPU-per-call ratio."""

    throughput: float
    """fnlb req/s over pass-through req/s (medians of the same run): the issue's figure."""
    cpu_efficiency: float
    """Pass-through CPU per call over fnlb's: the same question, less exposed to noise."""
    per_round: tuple[float, ...]
    """fnlb req/s over the pass-through's in each round (adjacent runs, similar noise)."""
    best_cpu_efficiency: float
    """The same CPU ratio from each one's cheapest round: other work on the machine only ever
    adds CPU per call (cache misses, context switches), so the minimum is the cleanest."""

    @property
    def met(self) -> bool:
        return self.throughput >= TARGET_RATIO


def fnlb_verdict(targets: list[Target]) -> Verdict | None:
    by_name = {t.name: t for t in targets if t.runs}
    fnlb, base = by_name.get(FNLB), by_name.get(PASSTHROUGH)
    if fnlb is None or base is None:
        return None

    def cpu(t: Target) -> float:
        return t.median(lambda r: r.cpu_us_per_call)

    return Verdict(
        fnlb.median_rps() / base.median_rps(),
        cpu(base) / cpu(fnlb),
        tuple(f.wrk.rps / b.wrk.rps for f, b in zip(fnlb.runs, base.runs, strict=True)),
        min(r.cpu_us_per_call for r in base.runs) / min(r.cpu_us_per_call for r in fnlb.runs),
    )


def run(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    if shutil.which("wrk") is None:
        say("wrk is not installed (Debian: apt-get install wrk)")
        return 2
    plan = cpu_plan(pin=not args.no_pin and not args.haproxy_mt)
    own_group_nice = autogroup_nice(os.getpid())
    if args.nice and not set_priority(os.getpid(), args.nice):  # wrk inherits it
        say(f"cannot set niceness {args.nice} (not root): running at the default")
    try:
        return _run(args, say, plan)
    finally:
        if args.nice and own_group_nice is not None:
            set_priority(os.getpid(), own_group_nice)  # the caller's session, as it was


def _run(args: argparse.Namespace, say: Callable[[str], None], plan: CpuPlan) -> int:
    backend = args.backend
    if backend == "auto":
        backend = "nginx" if shutil.which("nginx") else "aiohttp"
    for line in machine_summary():
        say(line)
    say(f"backend: {backend}, {args.nodes} nodes; {plan.describe()}; nice {os.nice(0)}")
    say(
        f"load: wrk -t{args.threads} -c{args.connections} -d{args.duration}s, POST over "
        f"{args.keys} paths /r/{APP}/fnN; {args.repeats} interleaved rounds after "
        f"{args.warmup}s warm-up"
    )
    say(f"load average at start: {_loadavg()}")
    with (
        tempfile.TemporaryDirectory(prefix="fnlb-bench-proxy-") as tmp_name,
        ProcessGroup(Path(tmp_name), nice=args.nice) as group,
    ):
        tmp = Path(tmp_name)
        try:
            targets, all_fnlb = start_targets(args, backend, group, tmp, plan, say)
        except StartError as e:
            say(f"could not start: {e}")
            return 2
        script = tmp / "calls.lua"
        script.write_text(lua_script(args.keys, APP))
        try:
            measure(targets, args, script, plan, say)
            paced = paced_latency(targets, args, tmp, plan, say) if args.paced else []
            paced += memory_lines(targets)
        except StartError as e:
            say(f"stopped: {e}")
            return 2
        for line in paced:
            say(line)
    say(f"load average at end: {_loadavg()}")
    code = report(targets, args, say)
    return code if all_fnlb else 2


def worker_counts(args: argparse.Namespace) -> list[int]:
    return [int(n) for n in str(args.fnlb_workers).split(",") if n.strip()]


def memory_lines(targets: list[Target]) -> list[str]:
    """Resident memory of each fnlb row's processes (primary first, then its workers)."""
    lines = []
    for t in targets:
        if t.name.startswith(FNLB) and t.proc.popen.poll() is None:
            sizes = tree_rss_kb(t.proc.popen.pid)
            mb = ", ".join(f"{kb / 1024:.0f}" for kb in sizes)
            lines.append(f"memory (RSS MB, primary first): {t.name}: {mb}")
    return lines


def start_targets(
    args: argparse.Namespace,
    backend: str,
    group: ProcessGroup,
    tmp: Path,
    plan: CpuPlan,
    say: Callable[[str], None],
) -> tuple[list[Target], bool]:
    """Start the nodes and every proxy; also whether every fnlb row could start.

    A yardstick that fails to start raises StartError; an fnlb that fails is reported and
    left out, so the others are still measured.
    """
    node_ports = [free_port() for _ in range(args.nodes)]
    nodes = start_backend(backend, group, node_ports, tmp, plan.load)
    targets = [backend_target(backend, nodes, node_ports[0])]
    if shutil.which("haproxy"):
        targets.append(start_haproxy(group, HAPROXY, node_ports, tmp, plan.proxy, 1))
        if args.haproxy_mt:
            targets.append(start_haproxy(group, HAPROXY_MT, node_ports, tmp, plan.proxy, None))
    else:
        say("haproxy is not installed: its row is skipped (Debian: apt-get install haproxy)")
    if backend == "nginx":
        targets.append(start_nginx_proxy(group, node_ports, tmp, plan.proxy))
    targets.append(start_passthrough(group, node_ports, plan.proxy))
    if args.only_fnlb:
        targets = []
    here = sys.executable
    fnlb_rows: list[tuple[str, list[str], Path, str]] = [(FNLB, [], REPO_ROOT, here)]
    if args.fnlb_cluster:
        cluster_args = [
            f"-gossip-listen={HOST}:{free_port()}",
            "-gossip-insecure",
            f"-state-dir={tmp / 'fnlb-state'}",
        ]
        fnlb_rows.append((FNLB_CLUSTER, cluster_args, REPO_ROOT, here))
    if args.fnlb_aiohttp:
        fnlb_rows.append((FNLB_AIOHTTP, ["-data-plane=aiohttp"], REPO_ROOT, here))
    for n in worker_counts(args):
        fnlb_rows.append((f"{FNLB_WORKERS} {n}", [f"-workers={n}"], REPO_ROOT, here))
    fnlb_rows += [(v.name, v.args, v.root, v.python) for v in args.variants]
    all_started = True
    for name, extra, root, python in fnlb_rows:
        cpus = None if name.startswith(FNLB_WORKERS) else plan.proxy
        try:
            targets.append(
                start_fnlb(group, node_ports, cpus, extra + args.fnlb_arg, name, root, python)
            )
        except StartError as e:
            say(f"{name} did not start, its row is missing: {e}")
            all_started = False
    for t in targets[0 if args.only_fnlb else 1 :]:
        t.nodes_seen = nodes_reached(t.url, min(args.keys, 30))
    return targets, all_started


def measure(
    targets: list[Target],
    args: argparse.Namespace,
    script: Path,
    plan: CpuPlan,
    say: Callable[[str], None],
) -> None:
    """Warm each target up, then load them in interleaved rounds, appending to `runs`."""

    def load(t: Target, seconds: int) -> Run:
        cpu_before = tree_cpu_seconds(t.proc.popen.pid)
        result = run_wrk(
            t.url,
            script,
            duration=seconds,
            connections=args.connections,
            threads=args.threads,
            cpus=plan.load,
        )
        if t.proc.popen.poll() is not None:
            raise StartError(f"{t.name} exited during its run:\n{t.proc.log_tail()}")
        return Run(result, tree_cpu_seconds(t.proc.popen.pid) - cpu_before)

    if args.warmup:
        for t in targets:
            load(t, args.warmup)
    for round_no in range(1, args.repeats + 1):
        # --alternate: every other round in reverse, so a trend in the machine's load within
        # a round does not always favour the rows that come first
        order = targets[::-1] if args.alternate and round_no % 2 == 0 else targets
        for t in order:
            run = load(t, args.duration)
            t.runs.append(run)
            r = run.wrk
            say(
                f"  round {round_no} {t.name:<32} {r.rps:>9,.0f} req/s  p50 {r.p50_ms:6.2f} "
                f"ms  p99 {r.p99_ms:6.2f} ms  errors {r.errors}  "
                f"CPU {run.cpu_us_per_call:4.0f} µs/call, busy {run.cpu_share:.2f}"
            )


def paced_latency(
    targets: list[Target],
    args: argparse.Namespace,
    tmp: Path,
    plan: CpuPlan,
    say: Callable[[str], None],
) -> list[str]:
    """Latency at half of each proxy's measured maximum rate, against the backend alone paced
    to the same rate right after it: what the proxy adds when it is not saturated."""
    backend = targets[0]
    lines = [
        "",
        "| config | paced to calls/s | achieved | p50 ms | p99 ms | backend alone p99 ms | "
        "p99 added ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in targets[1:]:
        if not t.runs or t.name == PASSTHROUGH:
            continue
        rate = t.median_rps() / 2
        # wrk waits `delay` after each answer, so a connection's cycle is the wait plus the
        # answer's own time: one short calibration run measures the latter and shortens the
        # wait by it (whole milliseconds: wrk's timer resolution).
        period_ms = args.connections * 1000 / rate
        delay = max(1, round(period_ms))
        probe = run_wrk(
            t.url,
            _paced_script(tmp, args.keys, delay),
            duration=min(2, args.duration),
            connections=args.connections,
            threads=args.threads,
            cpus=plan.load,
        )
        if probe.rps > 0:
            delay = max(1, round(period_ms - (args.connections * 1000 / probe.rps - delay)))
        script = _paced_script(tmp, args.keys, delay)

        def paced(url: str, script: Path = script) -> WrkResult:
            return run_wrk(
                url,
                script,
                duration=args.duration,
                connections=args.connections,
                threads=args.threads,
                cpus=plan.load,
            )

        own, alone = paced(t.url), paced(backend.url)
        say(
            f"  paced {t.name:<32} {own.rps:>9,.0f} req/s  p99 {own.p99_ms:6.2f} ms "
            f"(backend alone {alone.p99_ms:6.2f} ms)"
        )
        lines.append(
            f"| {t.name} | {rate:,.0f} | {own.rps:,.0f} | {own.p50_ms:.2f} | {own.p99_ms:.2f} "
            f"| {alone.p99_ms:.2f} | {own.p99_ms - alone.p99_ms:+.2f} |"
        )
    return lines


def _paced_script(tmp: Path, keys: int, delay_ms: int) -> Path:
    script = tmp / f"paced-{delay_ms}.lua"
    script.write_text(lua_script(keys, APP, delay_ms))
    return script


def report(targets: list[Target], args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """Print the table, the verdict and the rerun command; 1 if --check and below target."""
    say("")
    say(render_table(targets))
    say("")
    starved = [
        t.name
        for t in targets
        if t.name in (PASSTHROUGH, FNLB, FNLB_CLUSTER, FNLB_AIOHTTP, NGINX_PROXY)
        and t.runs
        and t.median(lambda r: r.cpu_share) < 0.85
    ]
    if starved:
        say(
            f"note: {', '.join(starved)} used less than 85% of its CPU: the load did not "
            "saturate it (few connections) or other work on the machine took the rest; in the "
            "latter case req/s understates it and CPU per call holds up better"
        )
    verdict = fnlb_verdict(targets)
    code = 0
    if verdict is not None:
        say(
            f"fnlb / aiohttp pass-through = {verdict.throughput:.2f} in req/s "
            f"(target >= {TARGET_RATIO}): {'met' if verdict.met else 'NOT met'}; "
            f"{verdict.cpu_efficiency:.2f} in CPU per call (pass-through's / fnlb's; "
            f"{verdict.best_cpu_efficiency:.2f} from each one's cheapest round); "
            f"req/s per round {' '.join(f'{r:.2f}' for r in verdict.per_round)}"
        )
        if args.check and not verdict.met:
            code = 1
    for line in variant_lines(targets, args.variants):
        say(line)
    say(f"rerun: {rerun_command(args)}")
    return code


def variant_lines(targets: list[Target], variants: list[Variant]) -> list[str]:
    """Each variant's CPU per call and req/s over the plain fnlb row's, from the same rounds."""
    by_name = {t.name: t for t in targets if t.runs}
    base = by_name.get(FNLB)
    out = []
    for v in variants:
        t = by_name.get(v.name)
        if base is None or t is None:
            continue
        cpu = [
            r.cpu_us_per_call / b.cpu_us_per_call for r, b in zip(t.runs, base.runs, strict=True)
        ]
        rps = [r.wrk.rps / b.wrk.rps for r, b in zip(t.runs, base.runs, strict=True)]
        out.append(
            f"{v.name} / fnlb: CPU per call x{statistics.median(cpu):.3f} "
            f"(rounds {' '.join(f'{x:.3f}' for x in cpu)}), "
            f"req/s x{statistics.median(rps):.3f} (rounds {' '.join(f'{x:.3f}' for x in rps)})"
        )
    return out


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    code = run(args, lambda line: print(line, flush=True))
    print(f"(took {time.monotonic() - started:.0f} s)", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
