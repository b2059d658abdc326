"""What wait for warm (`-warm-wait=300ms`; off by default) costs the fast plane per call, in CPU.

Drives bench/fast_plane_cpu's in-memory fast plane (no sockets: what fnlb's Python code
spends per call, hotset routing, no observer) with and without a `WarmHolds`,
interleaved round by round, and prints the medians. The calls come one at a time, so none
is ever held: this is the price every call pays for the counting (a started and a finished
per attempt, a hold check per call), not the price of a hold.

Rerun (from the repository root; about a minute):

    python -m bench.warm_wait_cpu                # 21 rounds of 20,000 calls each way
    python -m bench.warm_wait_cpu --rounds 5     # quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvloop

if __package__ in (None, ""):  # run as a file: make `bench` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import fast_plane_cpu
from fnlb.proxy import fast_server
from fnlb.proxy.warm_hold import WarmHolds

HOLD_S = 0.3


def measure(warm: bool, calls: int) -> float:
    """Python CPU µs per proxied call (bench/fast_plane_cpu), with wait for warm or not."""
    plain = fast_server.FastProxy.__init__

    def with_warm(self: fast_server.FastProxy, *args: Any, **kwargs: Any) -> None:
        plain(self, *args, **kwargs)
        self.warm = WarmHolds(HOLD_S, self.observer)

    if warm:
        fast_server.FastProxy.__init__ = with_warm  # type: ignore[method-assign]
    try:
        return uvloop.run(fast_plane_cpu.measure("hotset", calls))
    finally:
        fast_server.FastProxy.__init__ = plain  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=21, help="interleaved rounds (21)")
    p.add_argument("--calls", type=int, default=20_000, help="calls per round (20,000)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        p.error("--rounds and --calls must be at least 1")
    off: list[float] = []
    on: list[float] = []
    for _ in range(args.rounds):
        off.append(measure(False, args.calls))
        on.append(measure(True, args.calls))
    a, b = statistics.median(off), statistics.median(on)
    print("| fast plane, hotset | Python CPU µs/call (median) | rounds |")
    print("|---|---:|---:|")
    print(f"| -warm-wait=0 | {a:.2f} | {args.rounds} |")
    added = f"+{b - a:.2f}, {b / a:.2f}x"
    print(f"| -warm-wait=300ms (no call held) | {b:.2f} ({added}) | {args.rounds} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
