"""Where fnlb's cold starts go, against the best static partition, in virtual time.

bench/routing_oracle finds the best static partition of a trace; fnlb's online admission
is some way behind it. This splits that gap on the same trace (the oracle's options; default
bench/routing's default workload) by holding one thing at a time:

- `fnlb`: the online admission, a real Peer as in bench/routing_landscape, and how many
  protected functions each of its placements moved to another node (a move costs a cold
  start per container, and the old containers hold memory until evicted);
- `fnlb, its last placement held from the start`: the same Peer with its admission held,
  at every epoch, at the placement `fnlb` ended with: what learning and moving cost;
- `oracle's partition, fnlb's router`: the best partition that knows the trace (busiest node
  within `--busiest`) as the Peer's placement (each protected function's first home, the
  tail's nodes) with fnlb's own widths: what the router does with a partition;
- `oracle's partition, widths held`: the same with each function's width held at its count
  of homes in the partition (1 for all others): what the widths' changes cost, the burst's
  spread and the 60 s they are held included;
- `oracle's partition, routed by it`: bench/routing_oracle's own row (homes in turn);
- `pooled memory`: the reference.

Deterministic. Rerun (repository root; about a minute each):

    python -m bench.routing_gap
    python -m bench.routing_gap --duration-s 600       # the placements of a steady state
    python -m bench.routing_gap --window-s 5           # the widths' window at 5 s, not 60
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

if __package__ in (None, ""):  # run as a file: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.routing_landscape import NODES, Fnlb, Outcome, RoundRobin, replay
from bench.routing_oracle import (
    Workload,
    known_rates,
    partition,
    search,
    within,
    workload_arguments,
    workload_from,
)
from fnlb.routing.admission import Admission, Admitted, Placed
from fnlb.routing.placement import EPOCH_MS
from fnlb.routing.widths import LoadLevels, WidthPolicy, WidthTracker


class HeldAdmission(Admission):
    """Places `held` at every epoch, whatever the load."""

    def __init__(self, held: Admitted, slots_per_node: int) -> None:
        super().__init__(slots_per_node)
        self._held = held

    def place(
        self,
        nodes: Sequence[str],
        order_of: Callable[[str], Sequence[str]],
        slots: Mapping[str, int] | None = None,
        at: int | None = None,
    ) -> Admitted:
        at = self.last_cut if at is None else at
        self.placed = Placed(at // EPOCH_MS, tuple(nodes), 0, False, self._held)
        return self._held


class CountingAdmission(Admission):
    """The online admission, counting the protected functions each placement moves."""

    def __init__(self, slots_per_node: int) -> None:
        super().__init__(slots_per_node)
        self.moved: list[int] = []

    def place(
        self,
        nodes: Sequence[str],
        order_of: Callable[[str], Sequence[str]],
        slots: Mapping[str, int] | None = None,
        at: int | None = None,
    ) -> Admitted:
        before = self.admitted.homes
        got = super().place(nodes, order_of, slots, at)
        if before:
            self.moved.append(moved(before, got.homes))
        return got


def moved(before: Mapping[str, str], after: Mapping[str, str]) -> int:
    """Functions protected in both placements whose home differs (a newcomer has no
    containers to lose; a function that left keeps its containers where they were)."""
    return sum(1 for k, n in after.items() if k in before and before[k] != n)


class HeldWidths(WidthTracker):
    """Widths held at `widths` (every other function 1), whatever the load."""

    def __init__(self, widths: Mapping[str, int]) -> None:
        super().__init__()
        self.widths = MappingProxyType(dict(widths))

    def update(self, cut_ms: int, table: Mapping[str, LoadLevels], nodes: int) -> bool:
        return True


def rows(
    w: Workload, memory_mb: int, busiest: float, window_s: float = WidthPolicy().shrink_window_s
) -> list[tuple[str, Outcome, str]]:
    """(configuration, outcome, note) for each row of the module docstring; `window_s`: the
    widths' shrink window of every fnlb row (an experiment; fnlb's is 60 s)."""

    def run(
        held: Admitted | None = None, widths: Mapping[str, int] | None = None
    ) -> tuple[Outcome, Admission]:
        """fnlb on `w`'s trace, its placement held at `held` (None: placed online, its moves
        counted) and its widths at `widths` (None: its own)."""
        fnlb = Fnlb(NODES, memory_mb=memory_mb, widths=WidthPolicy(shrink_window_s=window_s))
        control = fnlb.peer.control
        assert control.admission is not None
        slots = control.admission.slots_per_node
        control.admission = CountingAdmission(slots) if held is None else HeldAdmission(held, slots)
        if widths is not None:
            control.widths = HeldWidths(widths)
        return replay(fnlb, w.spec, w.pool, NODES, w.after), control.admission

    online, counting = run()
    assert isinstance(counting, CountingAdmission)
    out = [("fnlb", online, _moves(counting.moved))]
    out.append(("fnlb, its last placement held from the start", run(counting.admitted)[0], ""))
    rates = known_rates(w.spec, "trace", w.after)
    ok = [(p, o) for p, o in search(w, rates) if within(o, busiest)]
    if not ok:
        return out
    part, static = min(ok, key=lambda x: x[1].cold)
    homes, tail = partition(part, rates, NODES)
    first = Admitted({k: hs[0] for k, hs in homes.items()}, tail)
    spread = {k: len(hs) for k, hs in homes.items() if len(hs) > 1}
    out.append(("oracle's partition, fnlb's router", run(first)[0], f"({part.label()})"))
    out.append(("oracle's partition, widths held", run(first, spread)[0], ""))
    out.append(("oracle's partition, routed by it", static, ""))
    return out


def _moves(moved: list[int]) -> str:
    if not moved:
        return "no placement after the first"
    return (
        f"{len(moved)} placements after the first moved {sum(moved)} homes "
        f"(at most {max(moved)} at once)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    workload_arguments(ap)
    ap.add_argument("--busiest", type=float, default=1.3, help="most busiest/mean for the oracle")
    ap.add_argument(
        "--window-s", type=float, default=60.0, help="the widths' shrink window (fnlb: 60)"
    )
    args = ap.parse_args(argv)
    w = workload_from(ap, args)
    if not 1 <= args.window_s <= 3600:
        ap.error("--window-s must be 1-3600")
    pooled = replay(RoundRobin(NODES[:1]), w.spec, w.pooled, NODES[:1], w.after)
    ref = pooled.cold or 1.0
    print(
        f"{args.functions} functions, {args.rate:g} calls/s, Zipf {args.zipf_s:g}, "
        f"{args.memory_mb} MB nodes x {len(NODES)}, {args.duration_s:g} s trace (first "
        f"{w.after:g} s not counted), seed {args.seed}\n"
    )
    print("| configuration | cold % | / pooled | busiest / mean | |")
    print("|---|---:|---:|---:|---|")
    got = rows(w, args.memory_mb, args.busiest, args.window_s)
    for name, o, note in [*got, ("pooled memory", pooled, "")]:
        star = "*" if o.saturated else ""
        print(f"| {name} | {o.cold:.2f}{star} | {o.cold / ref:.3f} | {o.busiest:.2f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
