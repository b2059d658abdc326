"""What observing a call costs the request path, in CPU time per call, measured in-process.

bench/proxy measures whole calls, where a few microseconds drown in the noise of a shared
machine (its A/B rows: docs/observability.md). This measures the observer's own work per
call, the calls `Proxy.handle` makes into `fnlb.observe` for one answered call: `begin` (only
with tracing), `attempt_started` (only for a traced call), and `end`. Each configuration
runs `--calls` times per round, configurations interleaved round by round, and the median of
the rounds' CPU time per call is printed, with each configuration's cost relative to a
proxied call's CPU time (`--call-us`, fnlb's CPU µs/call from bench/proxy's table).

Rerun (from the repository root):

    python -m bench.observe_cost                 # 200k calls x 7 rounds
    python -m bench.observe_cost --quick         # does it run?
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `fnlb` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp.test_utils import make_mocked_request

from fnlb.observe.access import AccessLog
from fnlb.observe.calls import CallObserver
from fnlb.observe.outcome import outcome_for
from fnlb.observe.tracing import Span, Tracer
from fnlb.observe.zipkin import ZipkinExporter
from fnlb.peer.core import Peer
from fnlb.routing.attempt import Attempt
from fnlb.routing.policies import make_policy

NODES = [f"10.0.0.{i}:8080" for i in range(1, 6)]
NONE = "no observer (the loop alone)"


class Encode:
    """A span sink that does the exporter's work but the POST: queue, then encode a batch."""

    def __init__(self, batch: int = 500) -> None:
        self._exporter = ZipkinExporter("http://127.0.0.1:9/api/v2/spans")
        self._queue: list[str] = []
        self._batch = batch

    def add(self, spans: list[Span]) -> None:
        self._queue.append(self._exporter.encode_items(spans))
        if len(self._queue) * 2 >= self._batch:
            f"[{','.join(self._queue)}]".encode()
            self._queue = []


def configurations() -> dict[str, Callable[[], CallObserver]]:
    import random

    peer = Peer(
        "self",
        routing=make_policy("hotset", random.Random(1), time.time),
        clock_ms=lambda: int(time.time() * 1000),
        healthy=1,
        unhealthy=1,
        gossip=False,
        seed=NODES,
    )
    for n in NODES:
        peer.health_checked(n, True, int(time.time() * 1000))
    outcome = outcome_for(peer)
    return {
        "all off (-call-metrics=false)": lambda: CallObserver(outcome, counting=False),
        "metrics (default)": lambda: CallObserver(outcome),
        "metrics + tracing, unsampled": lambda: CallObserver(
            outcome, tracer=Tracer(Encode(), sample_rate=0.0)
        ),
        "metrics + tracing, sampled": lambda: CallObserver(
            outcome, tracer=Tracer(Encode(), sample_rate=1.0)
        ),
        "metrics + tracing, 10 % sampled": lambda: CallObserver(
            outcome, tracer=Tracer(Encode(), sample_rate=0.1)
        ),
        "metrics + access log": lambda: CallObserver(
            outcome, access=AccessLog("json", stream=io.StringIO())
        ),
    }


def run_one(obs: CallObserver | None, calls: int, node: str) -> float:
    """CPU seconds per call of what the proxy calls for `calls` answered calls (None: the
    loop alone, as before the observer existed)."""
    request = make_mocked_request("POST", "/r/app/fn", headers={"Host": "fnlb"})
    begin = time.process_time()
    if obs is None:
        for _ in range(calls):
            now = time.time()
            empty: list[tuple[str, str]] = []
            # the record the proxy makes for the Peer anyway: in the baseline too
            done = Attempt("r/app/fn", node, "/r/app/fn", 200, now, 0.001, None, 0.0, now)
            del now, empty, done
        return (time.process_time() - begin) / calls
    for _ in range(calls):
        now = time.time()
        headers: list[tuple[str, str]] = []
        trace = obs.begin(request, headers) if obs.tracer is not None else None
        if trace is not None:
            trace.attempt_started(node, now)
        done = Attempt("r/app/fn", node, "/r/app/fn", 200, now, 0.001, None, 0.0, now)
        obs.end(trace, request, "r/app/fn", "/r/app/fn", done, 0, 200, now, now)
    return (time.process_time() - begin) / calls


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.observe_cost", description=__doc__)
    p.add_argument("--calls", type=int, default=200_000, help="calls per round")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    p.add_argument(
        "--call-us", type=float, default=200.0, help="CPU µs of one proxied call (bench/proxy)"
    )
    p.add_argument("--quick", action="store_true", help="2,000 calls x 2 rounds")
    args = p.parse_args(argv)
    if args.quick:
        args.calls, args.rounds = 2000, 2
    if args.calls < 1 or args.rounds < 1 or args.call_us <= 0:
        p.error("--calls, --rounds and --call-us must be positive")
    # the access log renders JSON lines to memory: the formatting is the cost, not the disk
    return _measure(args)


def _measure(args: argparse.Namespace) -> int:
    configs = configurations()
    node = NODES[0]
    per_call: dict[str, list[float]] = {name: [] for name in [NONE, *configs]}
    for _ in range(args.rounds):
        per_call[NONE].append(run_one(None, args.calls, node))
        for name, make in configs.items():
            per_call[name].append(run_one(make(), args.calls, node))
    base = statistics.median(per_call[NONE])
    print(f"{args.calls:,} calls x {args.rounds} interleaved rounds; proxied call = "
          f"{args.call_us:.0f} CPU µs")  # fmt: skip
    print("| configuration | CPU µs/call (median) | added | share of a proxied call |")
    print("|---|---:|---:|---:|")
    for name, values in per_call.items():
        us = statistics.median(values) * 1e6
        extra = us - base * 1e6
        print(f"| {name} | {us:.2f} | {extra:+.2f} | {extra / args.call_us:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
