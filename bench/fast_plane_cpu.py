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
them to. Two breakdown rows split the default metrics into their two parts: the routing
outcome classifier (fnlb.observe.outcome) run alone, and the counters with the outcome fixed.

Rerun (from the repository root):

    python -m bench.fast_plane_cpu                 # 60,000 calls per policy, 3 rounds
    python -m bench.fast_plane_cpu --calls=5000 --rounds=1   # quick
    python -m bench.fast_plane_cpu --observe --rounds=5      # the observer's cost too
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
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


class _OutcomeOnly(CallObserver):
    """The default observer's routing-outcome classifier alone, without its counters: the
    breakdown row that splits the metrics' cost between the classifier and the counting."""

    __slots__ = ()

    def end(self, trace: Any, request: Any, key: str, path: str, attempt: Any, index: int,
            *_: Any) -> None:  # fmt: skip
        if attempt is not None:
            self._outcome_of(key, path, attempt.node, index)


OBSERVERS: dict[str, Callable[[Peer], CallObserver]] = {
    "all off (-call-metrics=false)": lambda p: CallObserver(outcome_for(p), counting=False),
    "metrics (default)": lambda p: CallObserver(outcome_for(p)),
    "metrics: outcome classifier alone": lambda p: _OutcomeOnly(outcome_for(p)),
    "metrics: counters alone (outcome fixed)": lambda p: CallObserver(lambda *_: 0),
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


async def measure(policy: str, calls: int, observer: str | None = None) -> float:
    """Python CPU microseconds per proxied call with `policy`; `observer`: one of OBSERVERS
    (None: the proxy's default, which counts nothing)."""
    peer = Peer(
        LONE_NAME,
        routing=make_policy(policy, random.Random(1), time.time),
        clock_ms=lambda: int(time.time() * 1000),
        healthy=1,
        unhealthy=1,
        gossip=False,
        seed=NODES,
    )
    for node in NODES:
        peer.health_checked(node, True, int(time.time() * 1000))
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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fast_plane_cpu", description=__doc__)
    p.add_argument("--calls", type=int, default=60_000, help="calls per policy and round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median shown)")
    p.add_argument("--observe", action="store_true", help="also each observer configuration")
    args = p.parse_args(argv)
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
