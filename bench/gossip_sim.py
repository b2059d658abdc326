"""Gossip in the simulator: crash-detection times and per-member traffic by group size.

For each profile (fnlb's default, and memberlist's LAN numbers for comparison) and each N it
runs seeded trials in virtual time (fnlb.gossip.sim): settle a group of N, crash one member at
a seed-dependent moment, and record when every other member marks it dead. It prints the
distribution of the time until the LAST member did (min / median / p90 / max over trials)
and the median over all (trial, observer) pairs. The same for an update: one member of a
settled group changes its metadata (`set_meta`, a new incarnation) and the trial records when
every other member has seen it (its UPDATED event). Then, per N, it measures steady-state
traffic over a quiet `--window` (probes, acks, gossip, push-pull): datagrams and bytes per
second per member, and stream (push-pull) bytes per second per member. Finally, the wall
time of one 60 s simulated minute at N=500.

The simulated network: one-way latency 0.5 ms + up to 1 ms jitter, no loss (see
NetworkModel). Figures are in simulated seconds, so they do not depend on the machine;
only the "wall" columns do (and they grow with whatever else the machine runs; the N=500
line also gives CPU seconds, which do not). A last table counts suspicions and false deaths
at N=5 under 10, 20 and 40 % random loss of every packet, the experiment run against Serf.

Rerun (from the repository root; ~3-5 minutes on one core):

    python bench/gossip_sim.py
    python -m bench.gossip_sim --sizes 5,20 --trials 30 --profiles fnlb,lan,local
    python bench/gossip_sim.py --sizes 500 --trials 1 --profiles fnlb   # the N=500 figures
    python bench/gossip_sim.py --tables loss --profiles fnlb,lan,local
    python bench/gossip_sim.py --tables update --profiles fnlb,lan     # update propagation
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `fnlb` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fnlb.gossip.member import EventKind, MemberEvent, push_pull_interval
from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.sim import NetworkModel, crash_trial, detection_times, settled_group

PROFILES = {
    "fnlb": GossipProfile.fnlb_default,
    "lan": GossipProfile.lan,
    "local": GossipProfile.local,
}


def trials_for(n: int, base: int) -> int:
    """Fewer trials for big groups: each costs O(N) simulated members."""
    if n <= 20:
        return base
    if n <= 50:
        return max(3, base // 2)
    return 2


def spread_table(
    title: str,
    trial: Callable[[int, int, GossipProfile], list[float]],
    digits: int,
    profiles: list[str],
    sizes: list[int],
    trials: int,
) -> None:
    """Per profile and N: `trial(n, seed, profile)` gives each other member's time to see
    something; print the distribution of the time until the LAST one did, over the seeds."""
    print(title)
    head = f"{'profile':<8} {'N':>4} {'trials':>6} {'min':>6} {'median':>7} {'p90':>6} {'max':>6}"
    print(f"{head} {'each-median':>12} {'wall s':>7}")
    w = digits
    for pname in profiles:
        profile = PROFILES[pname]()
        for n in sizes:
            k = trials_for(n, trials)
            start = time.perf_counter()
            lasts: list[float] = []
            each: list[float] = []
            for seed in range(k):
                times = trial(n, seed, profile)
                if len(times) < n - 1:
                    print(f"  seed {seed}: only {len(times)} of {n - 1} members saw it")
                    continue
                lasts.append(times[-1])
                each.extend(times)
            wall = time.perf_counter() - start
            if not lasts:
                continue
            lasts.sort()
            p90 = lasts[min(len(lasts) - 1, int(0.9 * len(lasts)))]
            print(
                f"{pname:<8} {n:>4} {k:>6} {lasts[0]:>6.{w}f} {statistics.median(lasts):>7.{w}f} "
                f"{p90:>6.{w}f} {lasts[-1]:>6.{w}f} {statistics.median(each):>12.{w}f} "
                f"{wall:>7.1f}"
            )


def update_trial(n: int, seed: int, profile: GossipProfile) -> list[float]:
    """One member of a settled group sets new metadata; seconds until each other member has
    it (its UPDATED event), sorted. Runs until all have it, or 30 simulated seconds.

    The change is made between two of the origin's timers, as an owner calling `set_meta`
    would: it leaves with the origin's next gossip round (or the next packet it sends).
    """
    sim, names = settled_group(n, seed, profile, log=None, timeout=300.0)
    sim.run_for(2.0 + (seed % 11) * 0.0913)  # a seed-dependent phase of the timers
    origin = names[seed % n]
    seen = detection_times(sim, origin, EventKind.UPDATED)
    start = sim.now
    sim.slots[origin].member.set_meta(f"v{seed}".encode(), start)
    sim.run_until_true(lambda: len(seen) == n - 1, 30.0, step=0.01)
    return sorted(t - start for t in seen.values())


def traffic_table(profiles: list[str], sizes: list[int], window: float) -> None:
    print(
        f"\nsteady-state traffic per member over max({window:.0f} s, two push-pull periods) "
        "of simulated time, no failures"
    )
    print(
        f"{'profile':<8} {'N':>4} {'dgrams/s':>9} {'dgram B/s':>10} {'B/dgram':>8} "
        f"{'stream B/s':>11} {'wall s':>7}"
    )
    for pname in profiles:
        profile = PROFILES[pname]()
        for n in sizes:
            settle_cpu = time.process_time()
            sim, _ = settled_group(n, 1, profile, log=None, timeout=300.0)
            settle_cpu = time.process_time() - settle_cpu
            settled_at = sim.now
            sim.run_for(30.0)  # let join-time broadcasts and push-pulls die down
            # At least two push-pull periods, or the stream column is mostly luck.
            span = max(window, 2 * push_pull_interval(n, profile.push_pull_interval))
            before = dict(sim.traffic)
            start = time.perf_counter()
            cpu_start = time.process_time()
            sim.run_for(span)
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            per = {k: (sim.traffic[k] - before.get(k, 0)) / span / n for k in sim.traffic}
            dg = per.get("datagrams", 0.0)
            db = per.get("datagram_bytes", 0.0)
            print(
                f"{pname:<8} {n:>4} {dg:>9.2f} {db:>10.1f} {db / dg if dg else 0:>8.1f} "
                f"{per.get('stream_bytes', 0.0):>11.1f} {wall:>7.1f}"
            )
            if n >= 500:
                print(
                    f"  N={n}: settling (all joins known everywhere) took {settled_at:.1f} "
                    f"simulated s and {settle_cpu:.1f} s of CPU; then {span:.0f} simulated s "
                    f"took {cpu:.1f} s of CPU ({wall:.1f} s wall: other load inflates it), "
                    f"{60 * cpu / span:.1f} s of CPU per simulated minute"
                )


def loss_table(profiles: list[str], n: int = 5, seeds: int = 5, duration: float = 90.0) -> None:
    """Suspicions and false deaths under random loss of every packet (as Serf was tested)."""
    print(f"\nrandom loss of every datagram and stream segment, N={n}, {duration:.0f} s runs")
    print(f"{'profile':<8} {'loss':>5} {'runs':>5} {'suspicions/run':>15} {'false deaths/run':>17}")
    for pname in profiles:
        profile = PROFILES[pname]()
        for loss in (0.1, 0.2, 0.4):
            suspicions = deaths = 0
            for seed in range(seeds):
                sim, _ = settled_group(n, seed, profile, log=None)
                sim.net = NetworkModel(loss=loss)
                kinds: Counter[EventKind] = Counter()

                def count(
                    now: float, observer: str, ev: MemberEvent, k: Counter[EventKind] = kinds
                ) -> None:
                    k[ev.kind] += 1

                sim.hooks.append(count)
                sim.run_for(duration)
                suspicions += kinds[EventKind.SUSPECT]
                deaths += kinds[EventKind.DEAD]
            print(
                f"{pname:<8} {loss:>5.0%} {seeds:>5} {suspicions / seeds:>15.1f} "
                f"{deaths / seeds:>17.1f}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5,20,50,500", help="group sizes, comma-separated")
    parser.add_argument("--trials", type=int, default=20, help="crash trials at N <= 20")
    parser.add_argument("--profiles", default="fnlb,lan", help="of: fnlb, lan, local")
    parser.add_argument("--window", type=float, default=60.0, help="min traffic window, seconds")
    parser.add_argument(
        "--tables",
        default="detection,update,traffic,loss",
        help="of: detection, update, traffic, loss",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    profiles = args.profiles.split(",")
    tables = args.tables.split(",")
    if "detection" in tables:
        title = "crash -> marked dead by every other member (simulated seconds)"
        spread_table(title, crash_trial, 2, profiles, sizes, args.trials)
    if "update" in tables:
        title = "\nmetadata update (set_meta) -> seen by every other member (simulated seconds)"
        spread_table(title, update_trial, 3, profiles, sizes, args.trials)
    if "traffic" in tables:
        traffic_table(profiles, sizes, args.window)
    if "loss" in tables:
        loss_table(profiles)


if __name__ == "__main__":
    main()
