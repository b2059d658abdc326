"""Properties of the protocol, checked in the deterministic simulator (virtual time).

Every simulation prints its seed ("gossip sim seed=N"); rerun one with
`Simulation(N, GossipProfile.fnlb_default())`. Every test also asserts the invariants the
simulator checks throughout (incarnations never decrease - in events, and in whole tables
where `audit_every` is on; no member holds itself dead; every datagram within budget).
"""

from __future__ import annotations

import functools
import statistics

import pytest

from fnlb.gossip.member import EventKind, MemberEvent
from fnlb.gossip.messages import MemberState
from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.sim import NetworkModel, Simulation, crash_trial, detection_times, settled_group

PROFILE = GossipProfile.fnlb_default()


@functools.cache
def crash_detection(n: int, trials: int) -> list[float]:
    """Per trial, seconds until EVERY other member marked the crashed one dead."""
    out = []
    for seed in range(trials):
        times = crash_trial(n, seed, PROFILE)
        assert len(times) == n - 1, f"seed {seed}: only {len(times)} of {n - 1} saw the crash"
        out.append(times[-1])
    return out


def test_a_join_is_known_to_all_100_members_within_one_second() -> None:
    """Bound: the seed learns of the newcomer by push-pull (one stream round trip) and queues
    its Alive; each member that learns it gossips it to 3 random members every 0.1 s round
    (and on every probe packet) for retransmit_limit(100) = 12 sends. Infection with fan-out 3
    reaches N members in about log4(N) + ln(N)/3 ~ 5 rounds (0.5 s) with high probability; we
    allow twice that: 1.0 s, far below the 15 s push-pull that would otherwise heal it."""
    sim, names = settled_group(100, 11, PROFILE)
    sim.run_for(2.0)
    sim.add("newcomer")
    seen = detection_times(sim, "newcomer", EventKind.JOINED)
    start = sim.now
    sim.start("newcomer", [names[7]])
    sim.run_for(5.0)
    assert len(seen) == 100
    latest = max(seen.values()) - start
    print(f"join known to all 100 after {latest:.3f} s")
    assert latest <= 1.0
    assert sim.converged([*names, "newcomer"])
    assert sim.violations == []


@pytest.mark.parametrize(("n", "trials", "bound"), [(5, 20, 3.0), (20, 10, 3.5)])
def test_a_crash_is_marked_dead_by_every_member(n: int, trials: int, bound: float) -> None:
    """Serf LAN took ~6 s (N=5) and ~7 s (N=20) on loopback; we want half: the median over
    seeded trials of 'every other member marked it dead' is within `bound`."""
    times = crash_detection(n, trials)
    med = statistics.median(times)
    print(
        f"N={n} crash -> all marked dead, {trials} seeds: "
        f"min {min(times):.2f} median {med:.2f} max {max(times):.2f} s"
    )
    assert med <= bound
    assert max(times) <= 2 * bound


@pytest.mark.slow
def test_no_false_death_at_10_percent_loss_for_30_minutes() -> None:
    sim, names = settled_group(50, 3, PROFILE, NetworkModel(loss=0.10))
    dead: list[tuple[float, str, str]] = []
    suspicions = 0

    def hook(now: float, observer: str, ev: MemberEvent) -> None:
        nonlocal suspicions
        if ev.kind is EventKind.DEAD:
            dead.append((now, observer, ev.name))
        suspicions += ev.kind is EventKind.SUSPECT

    sim.hooks.append(hook)
    sim.run_for(30 * 60.0)
    print(f"30 min at 10 % loss: {suspicions} suspicions, {len(dead)} deaths, {sim.traffic}")
    assert dead == []
    assert sim.converged(names)
    assert sim.violations == []


def _false_deaths(
    sim: Simulation, duration: float
) -> tuple[list[float], dict[tuple[str, str], float]]:
    """Run `sim` for `duration`: how long each death lasted until the member was alive
    again, and the deaths still standing at the end ((observer, member) -> since)."""
    dead_since: dict[tuple[str, str], float] = {}
    undone_after: list[float] = []

    def hook(now: float, observer: str, ev: MemberEvent) -> None:
        key = (observer, ev.name)
        if ev.kind is EventKind.DEAD:
            dead_since[key] = now
        elif ev.kind is EventKind.JOINED and key in dead_since:
            undone_after.append(now - dead_since.pop(key))

    sim.hooks.append(hook)
    sim.run_for(duration)
    return undone_after, dead_since


@pytest.mark.slow
def test_three_peers_at_20_percent_loss_rarely_see_a_false_death_and_undo_it_at_once() -> None:
    """cluster-tests runs this with real processes; its odds live here, in virtual time.

    Three members expect no independent confirmation, so a suspicion runs out at its
    minimum (1.6 s), and at 20 % loss both ways a refutation and its repeats are sometimes
    all lost. Over 50 seeded two-minute runs at most two may see a death, each undone (the
    member refutes and is alive again everywhere) within a second.
    """
    runs_with_a_death = 0
    for seed in range(50):
        sim, names = settled_group(3, seed, PROFILE, NetworkModel(loss=0.2), log=None)
        undone_after, still_dead = _false_deaths(sim, 120.0)
        runs_with_a_death += bool(undone_after or still_dead)
        assert still_dead == {}, f"seed {seed}: still dead at the end"
        assert all(t < 1.0 for t in undone_after), f"seed {seed}: {undone_after}"
        assert sim.converged(names), f"seed {seed}"
        assert sim.violations == []
    assert runs_with_a_death <= 2


def test_the_stream_fallback_probe_prevents_suspicions_when_only_udp_is_lost() -> None:
    """memberlist's TCP fallback, as Serf showed on real hosts: 40 % UDP-only loss, no
    suspicion at all, because each late probe is also sent over a (lossless) stream."""
    sim, names = settled_group(5, 14, PROFILE)
    sim.net = NetworkModel(loss=0.4, stream_loss=0.0)
    suspected = detection_times(sim, names[2], EventKind.SUSPECT)
    kinds: list[EventKind] = []
    sim.hooks.append(lambda now, observer, ev: kinds.append(ev.kind))
    sim.run_for(90.0)
    assert suspected == {}
    assert EventKind.SUSPECT not in kinds
    assert sim.traffic["lost"] > 100
    assert sim.violations == []


@pytest.mark.parametrize(("n", "trials", "bound"), [(5, 10, 3.0), (20, 6, 3.5)])
def test_a_pause_of_two_thirds_the_detection_time_is_survived_and_refuted(
    n: int, trials: int, bound: float
) -> None:
    """An event-loop stall of 2/3 of the crash-detection time: nobody declares the paused
    member dead, and it refutes the suspicion when it wakes. We pause for 2/3 of the
    detection *target* (3 s at N=5, 3.5 s at N=20: 2.0 s and 2.33 s), which is longer than
    2/3 of what we measure (median 2.2 s and 3.1 s)."""
    pause = 2 / 3 * bound
    print(f"N={n}: pausing for {pause:.2f} s")
    refuted = 0
    for seed in range(100, 100 + trials):
        sim, names = settled_group(n, seed, PROFILE)
        sim.run_for(1.0 + seed % 7 * 0.057)
        victim = names[seed % n]
        dead = detection_times(sim, victim, EventKind.DEAD)
        suspected = detection_times(sim, victim, EventKind.SUSPECT)
        before = sim.slots[victim].member.incarnation
        sim.pause(victim, pause)
        sim.run_for(pause + 10.0)
        assert dead == {}, f"seed {seed}: {victim} declared dead by {sorted(dead)}"
        if suspected:
            assert sim.slots[victim].member.incarnation > before
            refuted += 1
        assert sim.converged(names)
        assert sim.violations == []
    assert refuted > 0  # the pause is long enough to be noticed


def test_a_healed_partition_is_one_membership_within_two_push_pull_intervals() -> None:
    """N=50 split 25/25 for 60 s. Bound: two *unscaled* push-pull intervals (30 s; at N=50
    the member stretches its own to 30 s, so this is stricter than the issue asks)."""
    sim, names = settled_group(50, 5, PROFILE)
    sim.audit_every(1.0)
    left, right = names[:25], names[25:]
    sim.partition([left, right])
    sim.run_for(60.0)
    assert sim.all_see(right[0], MemberState.DEAD, left)
    assert sim.all_see(left[0], MemberState.DEAD, right)
    sim.heal()
    start = sim.now
    healed = sim.run_until_true(lambda: sim.converged(names), 2 * PROFILE.push_pull_interval)
    print(f"partition healed {sim.now - start:.2f} s after the network did")
    assert healed
    assert sim.violations == []


def test_a_one_way_partition_heals_on_its_own() -> None:
    sim, names = settled_group(10, 6, PROFILE)
    sim.audit_every(0.5)
    mute = names[3]
    sim.one_way([mute], [n for n in names if n != mute])
    sim.run_for(20.0)
    assert sim.all_see(mute, MemberState.DEAD)
    assert sim.slots[mute].member.state is MemberState.ALIVE
    sim.heal()
    assert sim.run_until_true(lambda: sim.converged(names), 2 * PROFILE.push_pull_interval)
    assert sim.violations == []


def test_graceful_leave_is_seen_as_left_and_a_rejoin_as_alive() -> None:
    sim, names = settled_group(20, 8, PROFILE)
    sim.audit_every(0.5)
    leaver = names[4]
    dead = detection_times(sim, leaver, EventKind.DEAD)
    sim.leave(leaver)
    others = [n for n in names if n != leaver]
    assert sim.run_until_true(lambda: sim.all_see(leaver, MemberState.LEFT, others), 5.0)
    sim.run_for(30.0)  # stays left: nobody probes it into "dead"
    assert sim.all_see(leaver, MemberState.LEFT, others)
    assert dead == {}
    sim.rejoin(leaver, [names[0]])
    assert sim.run_until_true(lambda: sim.converged(names), 5.0)
    # Leaving again, and coming back as a fresh process (incarnation 0) works too.
    sim.leave(leaver)
    assert sim.run_until_true(lambda: sim.all_see(leaver, MemberState.LEFT, others), 5.0)
    sim.run_for(5.0)
    sim.restart(leaver, [names[1]])
    assert sim.run_until_true(lambda: sim.converged(names), 5.0)
    assert dead == {}
    assert sim.violations == []


def test_a_crashed_member_that_restarts_is_alive_again_at_a_higher_incarnation() -> None:
    sim, names = settled_group(20, 9, PROFILE)
    sim.audit_every(0.5)
    victim = names[2]
    sim.crash(victim)
    sim.run_for(15.0)
    assert sim.all_see(victim, MemberState.DEAD)
    sim.restart(victim, [names[0]])
    assert sim.run_until_true(lambda: sim.converged(names), 5.0)
    assert sim.slots[victim].member.incarnation > 0
    assert sim.violations == []


def test_user_broadcasts_reach_every_member() -> None:
    sim, names = settled_group(30, 10, PROFILE)
    sent = []
    for i, name in enumerate(names[:10]):
        payload = f"v{i}".encode() * 20
        sim.recording(name).broadcast(f"key{i % 3}".encode(), payload)
        sent.append((name, f"key{i % 3}".encode(), payload))
        sim.run_for(0.05)
    sim.run_for(3.0)
    for name in names:
        got = set(sim.recording(name).received)
        assert got == {s for s in sent if s[0] != name}, name
    assert sim.violations == []


def test_push_pull_delivers_delegate_state_to_everyone() -> None:
    sim, names = settled_group(16, 12, PROFILE)
    sim.recording(names[5]).state.add(b"only-in-state")
    spread = sim.run_until_true(
        lambda: all(b"only-in-state" in sim.recording(n).state for n in names),
        10 * PROFILE.push_pull_interval,
        step=1.0,
    )
    assert spread
    # A newcomer gets it with its join exchange, before any periodic push-pull.
    sim.add("late")
    sim.start("late", [names[0]])
    sim.run_for(0.5)
    assert b"only-in-state" in sim.recording("late").state


def test_the_same_seed_replays_the_same_run() -> None:
    def run() -> tuple[int, int, float]:
        sim, names = settled_group(12, 4, PROFILE, NetworkModel(loss=0.05), log=None)
        sim.crash(names[1])
        sim.run_for(10.0)
        return sim.traffic["datagrams"], sim.traffic["lost"], sim.now

    assert run() == run()


@pytest.mark.slow
def test_five_hundred_members_run_in_one_process() -> None:
    """Smoke test of scale (timing is measured by bench/gossip_sim.py, not asserted)."""
    sim = Simulation(13, PROFILE)
    sim.spawn(500, stagger=0.002, seeds=1)
    sim.run_for(1.5)
    assert sum(1 for s in sim.slots.values() if s.member.joined) == 500
    assert sim.violations == []


@pytest.mark.parametrize("profile", [GossipProfile.fnlb_default(), GossipProfile.local()])
def test_two_members_given_one_name_both_report_it_within_two_push_pull_intervals(
    profile: GossipProfile,
) -> None:
    """Twins learn of each other only through a third member, which holds one "twin" at a
    time: by its relays of their refutations, or at the latest by a push-pull with it."""
    bound = 2 * profile.push_pull_interval
    for seed in range(30):
        sim = Simulation(seed, profile, log=None)
        sim.add("a")
        sim.add("t1", node_name="twin")
        sim.add("t2", node_name="twin")
        sim.start("a")
        sim.start("t1", ["a"])
        sim.start("t2", ["a"])
        twins = [sim.slots[t].member for t in ("t1", "t2")]
        reported = sim.run_until_true(
            functools.partial(lambda ms: all(m.stats["name_conflicts"] for m in ms), twins),
            bound,
            step=0.1,
        )
        assert reported, f"seed {seed}: {[m.stats['name_conflicts'] for m in twins]}"
