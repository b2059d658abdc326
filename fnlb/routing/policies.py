"""Routing policies: which nodes a call tries, in order. `--routing` picks one.

- `rendezvous`: every function's own rendezvous order over the routable nodes (its home first,
  then the next nodes for spill and retry). Identical on every peer with the same view.
- `hotset`: load-aware (fnlb.routing.load_router, docs/routing.md): each function spreads over as
  many nodes of its rendezvous order as its cluster-wide load needs, the choice within that
  hot set weighs in-flight calls with a bounded-load cap, and busy nodes are avoided a while
  (shared by gossip). Opt-in until bench/routing measures it against the others.
- `classic`: the original fnlb, for comparison: siphash-2-4 of the URL path, jump hash over
  the sorted healthy nodes, then a walk away from nodes whose average `Xxx-Fxlb-Wait` for that
  path is high (fnlb.routing.classic). Each process keeps its own averages, as the original did.

A policy is pure (no I/O); the Peer (fnlb.peer.core) asks it for `candidates` once per call
and hands it each attempt's record (fnlb.routing.attempt) once. Both are on the request path,
so they must be cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from fnlb.routing.attempt import NO_ANSWER, Attempt
from fnlb.routing.classic import ClassicRouter, RandomSource
from fnlb.routing.hotset_policy import HotSetPolicy
from fnlb.routing.load_router import Router, RouterPolicy


class NodeView(Protocol):
    """What a policy reads of the routing view (`fnlb.cluster.view.NodeView` fits)."""

    @property
    def routable(self) -> tuple[str, ...]: ...

    def candidates(self, key: str) -> Sequence[str]: ...


POLICIES = ("rendezvous", "classic", "hotset")


class RoutingPolicy(Protocol):
    load_router: Router | None
    """The load-aware router the control loop feeds widths, homes and back-off (None: this
    policy reads no load)."""
    observes: bool
    """Whether `observe` does anything (the proxy skips the call on the hot path if not)."""

    def candidates(self, view: NodeView, key: str, path: str) -> Sequence[str]:
        """Nodes to try for a call to function `key` (request path `path`), best first."""
        ...

    def attempt_started(self, node: str, key: str) -> None:
        """An attempt of a call to `key` on `node` begins (called only if `observes`)."""
        ...

    def observe(self, attempt: Attempt) -> None:
        """How an attempt ended (called only if `observes`)."""
        ...


class _Unobserved:
    """A policy that learns nothing from answers (the proxy skips the calls: `observes`)."""

    observes = False
    load_router: Router | None = None

    def attempt_started(self, node: str, key: str) -> None:
        return None

    def observe(self, attempt: Attempt) -> None:
        return None


class RendezvousPolicy(_Unobserved):
    def candidates(self, view: NodeView, key: str, path: str) -> Sequence[str]:
        return view.candidates(key)


class ClassicPolicy(_Unobserved):
    """Learns each (node, path)'s wait from answers; needs no notice of attempts."""

    observes = True

    def __init__(self, rng: RandomSource) -> None:
        self.router = ClassicRouter(rng)

    def candidates(self, view: NodeView, key: str, path: str) -> Sequence[str]:
        return self.router.candidates(path, view.routable)

    def observe(self, attempt: Attempt) -> None:
        status = attempt.status
        if status != NO_ANSWER and status != 503:
            wait = attempt.wait_s
            self.router.observe(
                attempt.node, attempt.path, 0 if wait is None else round(wait * 1e9)
            )


def make_policy(name: str, rng: RandomSource, clock: Callable[[], float]) -> RoutingPolicy:
    """The policy called `name` (one of POLICIES); ValueError for another name.

    `clock`: the wall clock in seconds (hotset's back-off times are shared between peers).
    """
    if name == "rendezvous":
        return RendezvousPolicy()
    if name == "classic":
        return ClassicPolicy(rng)
    if name == "hotset":
        return HotSetPolicy(Router(RouterPolicy(), rng=rng), clock)
    raise ValueError(f"unknown routing policy {name!r}; choose one of {', '.join(POLICIES)}")
