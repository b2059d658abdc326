"""Which routing decision an answered call followed: home, spread, spill or retry.

Read at the end of a call from what routing reads anyway (the current view's memoised order,
the router's shared widths and homes), so the routers need not report their decisions. The
view may have changed during the call; the label then follows the new view, a harmless rarity.
"""

from __future__ import annotations

from typing import Protocol

from fnlb.cluster.view import NodeView
from fnlb.observe.calls import HOME, RETRY, SPILL, SPREAD, OutcomeOf
from fnlb.routing.classic import ClassicRouter
from fnlb.routing.hotset_policy import HotSetPolicy
from fnlb.routing.policies import ClassicPolicy, RoutingPolicy


class Routed(Protocol):
    """Who routes calls: the Peer (fnlb.peer.core), or a worker's stand-in for it."""

    @property
    def routing(self) -> RoutingPolicy: ...

    @property
    def view(self) -> NodeView: ...


def outcome_for(peer: Routed) -> OutcomeOf:
    """The classifier that matches the peer's routing policy (see fnlb.observe.calls for the
    outcomes)."""
    policy = peer.routing
    if isinstance(policy, HotSetPolicy):
        router = policy.router

        def hotset(key: str, path: str, node: str, attempt: int) -> int:
            if attempt:
                return RETRY
            order = peer.view.candidates(key)
            homes = router.shared.homes
            home = homes.get(key) if homes else None
            if node == (home or (order[0] if order else None)):
                return HOME
            width = router.width(key, len(order))
            for i in range(width):
                if order[i] == node:
                    return SPREAD
            return SPILL

        return hotset
    if isinstance(policy, ClassicPolicy):
        classic: ClassicRouter = policy.router

        def walked(key: str, path: str, node: str, attempt: int) -> int:
            if attempt:
                return RETRY
            routable = sorted(peer.view.routable)
            if not routable:
                return SPILL
            home = routable[classic.home_index(path, len(routable))]
            return HOME if node == home else SPILL

        return walked

    def rendezvous(key: str, path: str, node: str, attempt: int) -> int:
        if attempt:
            return RETRY
        order = peer.view.candidates(key)
        return HOME if order and order[0] == node else SPILL

    return rendezvous
