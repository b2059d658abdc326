"""Where the routing outcome of a call is read: the router that picked its first node.

The routers record at pick time what they put first (fnlb.routing.picked: home, spread or
spill); this names, per policy, the object that holds that record, so the proxy reads one
attribute after `candidates` and the metrics classify nothing after the call. (Until #14's
fix an after-the-call classifier re-read the view's order, the homes and the widths: a third
of the metrics' cost per call.)
"""

from __future__ import annotations

from typing import Protocol

from fnlb.routing.hotset_policy import HotSetPolicy
from fnlb.routing.picked import FixedPick, Picks
from fnlb.routing.policies import ClassicPolicy, RoutingPolicy


class Routed(Protocol):
    """Who routes calls: the Peer (fnlb.peer.core), or a worker's stand-in for it."""

    @property
    def routing(self) -> RoutingPolicy: ...


def outcome_for(peer: Routed) -> Picks:
    """What reports the outcome of `peer`'s routing policy's last pick: the hotset or
    classic router; under rendezvous the function's home always goes first."""
    policy = peer.routing
    if isinstance(policy, HotSetPolicy):
        return policy.router
    if isinstance(policy, ClassicPolicy):
        return policy.router
    return FixedPick()
