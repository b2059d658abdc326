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
