"""Homes for the hottest functions, chosen so that their containers are spread evenly.

Rule 1: no asyncio, socket, time or global random here.

Why: rendezvous hashing gives every function a home at random, so two or three of the hottest
functions often share one node. Each holds several warm containers there (a container per call
running at once, kept for Fn's idle timeout), the node's memory runs out, and Fn evicts its
other functions' idle containers, while other nodes hold nothing hot. Placing the hottest
functions so that their container demand is even cuts those cold starts (bench/routing_landscape;
the figures are in docs/benchmarks.md, "Figures behind design choices").

How: `container_demand` estimates the containers a function keeps warm from its cluster-wide
rate. `place` walks the functions from the most demanding, giving each the
first node of its own rendezvous order whose demand so far stays within an equal share, else
the least loaded node. The result depends only on its inputs, which every peer reads from the
same settled cut of the gossiped load (docs/routing.md, the shared load model), so every
peer computes the same homes; the caller recomputes it only at aligned epochs (`EPOCH_MS`),
when the routable nodes change, or at the next tick after a placement that had no load to
place, so homes do not flap with every small change of load, and a peer that once saw other
inputs agrees again at the next epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Final

EPOCH_MS: Final = 30_000
"""Homes are recomputed at wall-clock multiples of this (and when the routable nodes change).
Recomputed every second, they moved with each small change of load and the moves cost more
cold starts than the balance saved (docs/benchmarks.md, "Figures behind design choices")."""
HOT_HOMES: Final = 16
"""How many of the most demanding functions get a placed home; the rest keep rendezvous's.
8 and 32 both did worse (docs/benchmarks.md, "Figures behind design choices")."""
IDLE_TIMEOUT_S: Final = 30.0
"""Fn's default idle timeout: how long a container outlives its last call."""


def container_demand(rate: float, idle_timeout_s: float = IDLE_TIMEOUT_S) -> float:
    """Containers a function keeps warm on its node: the chance that a call comes within the
    idle timeout, 1 - exp(-rate x timeout), so about one for every function called every few
    seconds, less for rarer ones.

    Containers for calls running at once are left out on purpose: from the gossiped in-flight
    snapshots (small integers that jump between digests) they made placement worse, not
    better (docs/benchmarks.md, "Figures behind design choices"), and a function busy enough
    to need several containers is widened by the hot set anyway.
    """
    return -math.expm1(-rate * idle_timeout_s) if rate > 0.0 else 0.0


def place(
    rates: Mapping[str, float],
    order_of: Callable[[str], Sequence[str]],
    limit: int = HOT_HOMES,
) -> dict[str, str]:
    """Homes of the `limit` hottest functions (cluster-wide calls/s), their demand spread
    evenly.

    `order_of(key)`: the routable nodes in `key`'s rendezvous order (every order holds the same
    nodes). Demand grows with the rate, so the hottest function is placed first and keeps its
    rendezvous home even when demand saturates (every function called every few seconds has
    a demand of about 1); equal rates go by key: the result is a function of the inputs alone.
    """
    ranked = sorted((k for k, r in rates.items() if r > 0.0), key=lambda k: (-rates[k], k))
    ranked = ranked[:limit]
    if not ranked:
        return {}
    nodes = order_of(ranked[0])
    if len(nodes) < 2:
        return {}
    demand = {k: container_demand(rates[k]) for k in ranked}
    share = sum(demand.values()) / len(nodes) + 1e-9
    load = dict.fromkeys(nodes, 0.0)
    homes: dict[str, str] = {}
    for key in ranked:
        d = demand[key]
        order = order_of(key)
        home = next((n for n in order if load[n] + d <= share), None)
        if home is None:
            home = min(order, key=lambda n: load[n])  # min keeps the first of equals: order wins
        homes[key] = home
        load[home] += d
    return homes
