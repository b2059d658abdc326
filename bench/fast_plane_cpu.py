"""The fast data plane's own Python CPU per call, without sockets or a kernel in the way.

bench/proxy measures whole processes under wrk; on a shared machine its figures swing by
±15 % between rounds. This one drives fnlb.proxy.fast_server in memory: a client connection
and pooled node connections whose transports are plain lists, the same POST a wrk run sends
(200 function paths) and an nginx-like answer, per routing policy. What it reports is the
CPU the proxy's Python code spends per call (process time, not wall time), the part of
bench/proxy's CPU per call that fnlb's code decides; the rest is uvloop and the kernel.

`--observe` adds a table of the observer's configurations (fnlb.observe: metrics, tracing,
the access log) under hotset routing, interleaved in the same rounds: what each costs on the
fast plane, whose calls are cheaper than the aiohttp plane's that bench/observe_cost relates
them to.

`--instructions` counts instead of timing: each row runs in a child process under
valgrind's callgrind (`valgrind --tool=callgrind`, Debian's `valgrind`), once with `--warm`
calls and once with `--warm` + `--calls`, and the difference of the two runs' instruction
counts divided by `--calls` is the row's instructions per call: start-up, imports and the
first calls' caches cancel out. Instruction counts do not depend on what else runs on the
machine (PYTHONHASHSEED is fixed), nor on how fast it runs: the proxy, the Peer, routing and
the observer read a virtual clock here (`virtual_clock`: each read 20 µs after the one
before, a C-level counter as cheap as `time.time`), so the load figures' per-second work
comes at the same calls in every run. With the wall clock it came whenever valgrind's
slowness put a second's end, and counts moved by ~1,000 instructions per call between runs;
now two runs give the same count to a few instructions, so a lever of a few hundred is
visible. They are user-space instructions of this process: the kernel's and the sockets' work,
which bench/proxy's CPU per call includes, are not in them.

`--builds` compares the two builds of the call path (docs/proxy.md, "Compiled modules"):
every row runs in child processes, once on the modules mypyc compiled and once on their
sources (`FNLB_PURE_PYTHON=1`), alternated in each round; with `--instructions`, counted.

Rerun (from the repository root):

    python -m bench.fast_plane_cpu                 # 60,000 calls per policy, 3 rounds
    python -m bench.fast_plane_cpu --calls=5000 --rounds=1   # quick
    python -m bench.fast_plane_cpu --observe --rounds=5      # the observer's cost too
    python -m bench.fast_plane_cpu --instructions --observe  # instructions per call (callgrind)
    python -m bench.fast_plane_cpu --builds --calls=20000 --rounds=3   # compiled vs sources
    python -m bench.fast_plane_cpu --builds --instructions             # the same, counted
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `fnlb` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench.observe_cost import Encode
from fnlb.observe.access import AccessLog
from fnlb.observe.calls import CallObserver
from fnlb.observe.outcome import outcome_for
from fnlb.observe.tracing import Tracer
from fnlb.peer.core import LONE_NAME, Peer
from fnlb.proxy.fast_server import ClientConnection, FastProxy
from fnlb.proxy.upstream_pool import UpstreamConnection
from fnlb.routing.policies import POLICIES, make_policy

NODES = ("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 06 Dec 2026 12:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 26\r\nConnection: keep-alive\r\n"
    b"Fn-Call-Id: 0123456789\r\nX-Bench-Node: n1\r\n\r\n" + b'{"message":"Hello World"}\n'
)
REQUESTS = [
    b"POST /r/benchapp/fn%d HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    b"Content-Type: application/json\r\nContent-Length: 16\r\n\r\n"
    b'{"name":"bench"}' % i
    for i in range(1, 201)
]


class ListTransport:
    """A transport that keeps what is written (the bench empties it)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


OBSERVERS: dict[str, Callable[[Peer], CallObserver]] = {
    "all off (-call-metrics=false)": lambda p: CallObserver(outcome_for(p), counting=False),
    "metrics (default)": lambda p: CallObserver(outcome_for(p)),
    "metrics + tracing, unsampled": lambda p: CallObserver(
        outcome_for(p), tracer=Tracer(Encode(), sample_rate=0.0)
    ),
    "metrics + tracing, sampled": lambda p: CallObserver(
        outcome_for(p), tracer=Tracer(Encode(), sample_rate=1.0)
    ),
    "metrics + access log": lambda p: CallObserver(
        outcome_for(p), access=AccessLog("json", stream=io.StringIO())
    ),
}
"""The observer configurations `--observe` compares (the access log renders to memory)."""


@contextlib.contextmanager
def virtual_clock(
    start: float = 1_780_000_000.0, step: float = 20e-6
) -> Iterator[Callable[[], float]]:
    """A clock that reads `step` seconds later at each read, as `time.time` while the block
    runs; yields it for the Peer and the policy.

    It replaces the `time` module's own `time` attribute, not the `time` name in the call
    path's modules: a module compiled by mypyc (docs/proxy.md, "Compiled modules") keeps its
    imported modules in C statics that a swapped module global never reaches, but it still
    looks `time.time` up on the module at each call, as interpreted code does. Nothing else
    in the bench's process reads `time.time` while it runs (the event loop's clock is
    `time.monotonic`)."""
    tick = itertools.count(start, step).__next__
    real = time.time
    time.time = tick
    try:
        yield tick
    finally:
        time.time = real


async def measure(policy: str, calls: int, observer: str | None = None) -> float:
    """Python CPU microseconds per proxied call with `policy`; `observer`: one of OBSERVERS
    (None: the proxy's default, which counts nothing)."""
    with virtual_clock() as clock:
        return await _measure(policy, calls, observer, clock)


async def _measure(
    policy: str, calls: int, observer: str | None, clock: Callable[[], float]
) -> float:
    peer = Peer(
        LONE_NAME,
        routing=make_policy(policy, random.Random(1), clock),
        clock_ms=lambda: int(clock() * 1000),
        healthy=1,
        unhealthy=1,
        gossip=False,
        seed=NODES,
    )
    for node in NODES:
        peer.health_checked(node, True, int(clock() * 1000))
    make = OBSERVERS[observer] if observer is not None else None
    proxy = FastProxy(peer, connect_timeout=1.0, observer=make(peer) if make else None)
    upstreams: list[tuple[UpstreamConnection, ListTransport]] = []
    for node in NODES:
        for _ in range(4):
            up, t = UpstreamConnection(proxy.pool, node), ListTransport()
            up.connection_made(t)  # type: ignore[arg-type]
            proxy.pool.release(up, True)
            upstreams.append((up, t))
    client, client_t = ClientConnection(proxy), ListTransport()
    client.connection_made(client_t)  # type: ignore[arg-type]
    started = time.process_time()
    for i in range(calls):
        client.data_received(REQUESTS[i % len(REQUESTS)])
        for up, t in upstreams:
            if t.written:
                t.written.clear()
                up.data_received(ANSWER)
                break
        else:
            raise RuntimeError("the call reached no node")
        if not client_t.written or not client_t.written[-1].startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"no answer to call {i}: {client_t.written!r}")
        client_t.written.clear()
    return (time.process_time() - started) / calls * 1e6


_COLLECTED = re.compile(rb"Collected : (\d+)")
INSTRUCTION_ROWS = ("all off (-call-metrics=false)", "metrics (default)")
"""The observer rows `--instructions --observe` counts (the others: `--all-observers`)."""


BUILDS = ("sources", "compiled")
"""The call path's two builds `--builds` compares (fnlb.compiled)."""


def build_env(build: str | None) -> dict[str, str]:
    """A child's environment: fixed hashing, this checkout importable, and the build asked
    for (None: whichever fnlb.compiled chooses)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    if build is not None:
        env["FNLB_PURE_PYTHON"] = "1" if build == "sources" else "0"
    return env


def time_in_child(policy: str, observer: str | None, calls: int, build: str) -> float:
    """Python CPU µs per call of `calls` calls in a child process running `build`."""
    command = [sys.executable, "-m", "bench.fast_plane_cpu", "--child", policy]
    command += ["--child-observer", observer or "", "--calls", str(calls)]
    done = subprocess.run(
        command, capture_output=True, env=build_env(build), timeout=900, check=False
    )
    lines = done.stdout.decode().split()
    if done.returncode != 0 or len(lines) != 2 or lines[0] != build:
        raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-2000:]!r}")
    return float(lines[1])


def count_instructions(
    policy: str, observer: str | None, calls: int, build: str | None = None
) -> int:
    """Instructions callgrind counts in a child process that makes `calls` calls."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/callgrind.out",
            sys.executable,
            "-m",
            "bench.fast_plane_cpu",
            "--child",
            policy,
            "--child-observer",
            observer or "",
            "--calls",
            str(calls),
        ]
        done = subprocess.run(
            command, capture_output=True, env=build_env(build), timeout=1800, check=False
        )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        tail = done.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"callgrind run failed ({done.returncode}): {tail}")
    return int(found.group(1))


def instructions_per_call(
    policy: str, observer: str | None, warm: int, calls: int, build: str | None = None
) -> float:
    """Instructions per call: (count after warm + calls) - (count after warm), per call."""
    with ThreadPoolExecutor(2) as pool:  # the two runs are independent: use both CPUs
        short = pool.submit(count_instructions, policy, observer, warm, build)
        long = pool.submit(count_instructions, policy, observer, warm + calls, build)
        return (long.result() - short.result()) / calls


def instructions_table(args: argparse.Namespace) -> None:
    calls = args.calls if args.calls is not None else 3000
    print(f"instructions per call, callgrind, {args.warm} warm-up calls, {calls} counted")
    print()
    print("| routing | instructions/call |")
    print("|---|---:|")
    for policy in POLICIES:
        print(f"| {policy} | {instructions_per_call(policy, None, args.warm, calls):,.0f} |")
    if args.observe:
        rows = list(OBSERVERS) if args.all_observers else list(INSTRUCTION_ROWS)
        figures = {name: instructions_per_call("hotset", name, args.warm, calls) for name in rows}
        base = figures["all off (-call-metrics=false)"]
        print()
        print("| observer (hotset) | instructions/call | added | x all off |")
        print("|---|---:|---:|---:|")
        for name, value in figures.items():
            print(f"| {name} | {value:,.0f} | {value - base:+,.0f} | {value / base:.3f} |")
    more = " --observe" if args.observe else ""
    more += " --all-observers" if args.all_observers else ""
    print(
        f"rerun: python -m bench.fast_plane_cpu --instructions --warm={args.warm} "
        f"--calls={calls}{more}"
    )


def builds_table(args: argparse.Namespace) -> None:
    """Each policy (and with --observe, hotset with metrics on) on both builds, alternated."""
    rows: list[tuple[str, str | None]] = [(policy, None) for policy in POLICIES]
    if args.observe:
        rows.append(("hotset", "metrics (default)"))
    figures: dict[tuple[str, str | None, str], list[float]] = {}
    if args.instructions:
        calls = args.calls if args.calls is not None else 3000
        unit, rounds = "instructions/call (callgrind)", 1
        print(f"{unit}, {args.warm} warm-up calls, {calls} counted")
    else:
        calls = args.calls if args.calls is not None else 20_000
        unit, rounds = "Python CPU µs/call (median)", args.rounds
        print(f"{unit}, {calls} calls per row, {rounds} rounds, builds alternated")
    for _ in range(rounds):
        for policy, observer in rows:
            for build in BUILDS:
                if args.instructions:
                    value = instructions_per_call(policy, observer, args.warm, calls, build)
                else:
                    value = time_in_child(policy, observer, calls, build)
                figures.setdefault((policy, observer, build), []).append(value)
    print()
    print("| routing | sources | compiled (mypyc) | compiled / sources |")
    print("|---|---:|---:|---:|")
    for policy, observer in rows:
        pure, fast = (statistics.median(figures[policy, observer, b]) for b in BUILDS)
        name = policy + (f", {observer}" if observer else "")
        shown = (
            (f"{pure:,.0f}", f"{fast:,.0f}")
            if args.instructions
            else (f"{pure:.1f}", f"{fast:.1f}")
        )
        print(f"| {name} | {shown[0]} | {shown[1]} | {fast / pure:.3f} |")
    more = " --instructions" if args.instructions else f" --rounds={rounds}"
    more += " --observe" if args.observe else ""
    print(f"rerun: python -m bench.fast_plane_cpu --builds --calls={calls}{more}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fast_plane_cpu", description=__doc__)
    p.add_argument(
        "--calls", type=int, default=None, help="calls per policy and round (60,000; 3,000 counted)"
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median shown)")
    p.add_argument("--observe", action="store_true", help="also each observer configuration")
    p.add_argument(
        "--instructions", action="store_true", help="count instructions per call (callgrind)"
    )
    p.add_argument("--warm", type=int, default=1000, help="--instructions: calls not counted")
    p.add_argument(
        "--all-observers", action="store_true", help="--instructions: every observer row"
    )
    p.add_argument(
        "--builds", action="store_true", help="the compiled call path vs its sources (mypyc)"
    )
    p.add_argument("--child", metavar="POLICY", help=argparse.SUPPRESS)
    p.add_argument("--child-observer", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:  # one run in a child (count_instructions, time_in_child)
        from fnlb import compiled

        took = uvloop.run(measure(args.child, args.calls or 1, args.child_observer or None))
        print("sources" if compiled.BUILD == compiled.FORCED else compiled.BUILD.split()[0])
        print(f"{took:.4f}")
        return 0
    if args.builds:
        from fnlb import compiled

        if compiled.read_manifest() is None or compiled.BUILD == compiled.STALE:
            p.error(f"--builds needs a fresh compiled build ({compiled.BUILD}): pip install -e .")
        if args.instructions and shutil.which("valgrind") is None:
            p.error("--instructions needs valgrind (apt-get install valgrind)")
        if args.warm < 1 or (args.calls is not None and args.calls < 1) or args.rounds < 1:
            p.error("--warm, --calls and --rounds must be at least 1")
        builds_table(args)
        return 0
    if args.instructions:
        if shutil.which("valgrind") is None:
            p.error("--instructions needs valgrind (apt-get install valgrind)")
        if args.warm < 1 or (args.calls is not None and args.calls < 1):
            p.error("--warm and --calls must be at least 1")
        instructions_table(args)
        return 0
    if args.calls is None:
        args.calls = 60_000
    if args.calls < 1 or args.rounds < 1:
        p.error("--calls and --rounds must be at least 1")
    figures: dict[str, list[float]] = {policy: [] for policy in POLICIES}
    observed: dict[str, list[float]] = {name: [] for name in OBSERVERS} if args.observe else {}
    for _ in range(args.rounds):
        for policy in POLICIES:
            figures[policy].append(uvloop.run(measure(policy, args.calls)))
        for name in observed:
            observed[name].append(uvloop.run(measure("hotset", args.calls, name)))
    print("| routing | Python CPU µs/call (median) | rounds |")
    print("|---|---:|---|")
    for policy, values in figures.items():
        rounds = " ".join(f"{v:.1f}" for v in values)
        print(f"| {policy} | {statistics.median(values):.1f} | {rounds} |")
    if observed:
        base = statistics.median(observed["all off (-call-metrics=false)"])
        print()
        print("| observer (hotset) | Python CPU µs/call (median) | added | rounds |")
        print("|---|---:|---:|---|")
        for name, values in observed.items():
            rounds = " ".join(f"{v:.1f}" for v in values)
            median = statistics.median(values)
            print(f"| {name} | {median:.1f} | {(median - base) / base:+.1%} | {rounds} |")
    flag = " --observe" if args.observe else ""
    print(
        f"rerun: python -m bench.fast_plane_cpu --calls={args.calls} --rounds={args.rounds}{flag}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
