"""Gossip profiles: memberlist's numbers where named so, validation of nonsense."""

from __future__ import annotations

import pytest

from fnlb.errors import ConfigError
from fnlb.gossip.profile import GossipProfile


def test_lan_is_memberlists_lan_config() -> None:
    p = GossipProfile.lan()
    assert (p.probe_interval, p.probe_timeout, p.indirect_checks) == (1.0, 0.5, 3)
    assert (p.suspicion_mult, p.suspicion_max_timeout_mult) == (4, 6)
    assert (p.gossip_interval, p.gossip_nodes, p.retransmit_mult) == (0.2, 3, 4)
    assert (p.push_pull_interval, p.gossip_to_the_dead_time) == (30.0, 30.0)
    assert (p.awareness_max_multiplier, p.packet_budget) == (8, 1400)


def test_local_is_memberlists_local_config() -> None:
    p = GossipProfile.local()
    assert (p.probe_interval, p.probe_timeout, p.indirect_checks) == (1.0, 0.2, 1)
    assert (p.suspicion_mult, p.gossip_interval, p.retransmit_mult) == (3, 0.1, 2)
    assert (p.push_pull_interval, p.gossip_to_the_dead_time) == (15.0, 15.0)


def test_our_default_probes_faster_than_lan() -> None:
    ours, lan = GossipProfile.fnlb_default(), GossipProfile.lan()
    assert ours.probe_interval < lan.probe_interval
    assert ours.packet_budget == lan.packet_budget


@pytest.mark.parametrize(
    "changes",
    [
        {"probe_interval": 0.0},
        {"probe_timeout": 2.0},  # longer than the interval
        {"suspicion_mult": 0},
        {"gossip_nodes": 0},
        {"packet_budget": 100},
        {"push_pull_interval": -1.0},
    ],
)
def test_nonsense_is_a_config_error(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        GossipProfile.lan().replace(**changes)
