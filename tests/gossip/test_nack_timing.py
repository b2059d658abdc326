"""Helpers' nacks reach the prober before its probe ends, so a real failure does not make the
prober doubt itself (Lifeguard's local health awareness stays calm), in every profile."""

from __future__ import annotations

import pytest

from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.sim import settled_group


@pytest.mark.parametrize("profile", ["lan", "local", "fnlb_default"])
def test_probing_a_crashed_member_does_not_raise_awareness(profile: str) -> None:
    sim, names = settled_group(5, seed=11, profile=getattr(GossipProfile, profile)(), log=None)
    victim = names[0]
    sim.crash(victim)
    worst = 0
    for _ in range(40):  # 10 simulated seconds, sampled every 0.25 s
        sim.run_for(0.25)
        worst = max(worst, *(sim.slots[n].member.awareness_score for n in names[1:]))
    assert worst <= 1, f"{profile}: awareness rose to {worst} while probing a dead member"


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_helpers_on_a_slower_profile_still_nack_before_a_faster_probers_probe_ends(
    seed: int,
) -> None:
    # Two of five peers run memberlist's LAN timings (probe_timeout 0.5 s) among peers on our
    # default (0.15 s): on their own clock they would nack 0.4 s after a request, long after a
    # default prober's probe ended. The prober's IndirectPing says when it needs the nack.
    sim, names = settled_group(5, seed=seed, profile=GossipProfile.fnlb_default(), log=None)
    for name in names[1:3]:
        sim.slots[name].member.profile = GossipProfile.lan()
    sim.crash(names[0])
    worst = 0
    for _ in range(40):  # 10 simulated seconds, sampled every 0.25 s
        sim.run_for(0.25)
        worst = max(worst, *(sim.slots[n].member.awareness_score for n in names[1:]))
    # Every nack arrives in time, so no prober's score moves at all (without the carried
    # delay, each of these seeds raises some prober's score to 1 or 2).
    assert worst == 0, f"seed {seed}: awareness rose to {worst} in a mixed-profile group"
