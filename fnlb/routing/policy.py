"""Routing policies: which nodes a call tries, in order. `--routing` picks one.

- `rendezvous`: every function's own rendezvous order over the routable nodes (its home first,
  then the next nodes for spill and retry). Identical on every peer with the same view.
- `classic`: the original fnlb, for comparison: siphash-2-4 of the URL path, jump hash over
  the sorted healthy nodes, then a walk away from nodes whose average `Xxx-Fxlb-Wait` for that
  path is high (fnlb.routing.classic). Each process keeps its own averages, as the original did.

A policy is pure (no I/O); the proxy calls `candidates` once per call and `observe` once per
answer. Both are on the request path, so they must be cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from fnlb.routing.classic import ClassicRouter, RandomSource

if TYPE_CHECKING:
    from fnlb.cluster.view import NodeView

POLICIES = ("rendezvous", "classic")


class RoutingPolicy(Protocol):
    observes: bool
    """Whether `observe` does anything (the proxy skips the call on the hot path if not)."""

    def candidates(self, view: NodeView, key: str, path: str) -> Sequence[str]:
        """Nodes to try for a call to function `key` (request path `path`), best first."""
        ...

    def observe(self, node: str, key: str, path: str, status: int, wait: str | None) -> None:
        """One answer from `node` (its status and `Xxx-Fxlb-Wait` header, if any)."""
        ...


class RendezvousPolicy:
    observes = False

    def candidates(self, view: NodeView, key: str, path: str) -> Sequence[str]:
        return view.candidates(key)

    def observe(self, node: str, key: str, path: str, status: int, wait: str | None) -> None:
        return None


class ClassicPolicy:
    observes = True

    def __init__(self, rng: RandomSource) -> None:
        self.router = ClassicRouter(rng)

    def candidates(self, view: NodeView, key: str, path: str) -> Sequence[str]:
        return self.router.candidates(path, view.routable)

    def observe(self, node: str, key: str, path: str, status: int, wait: str | None) -> None:
        self.router.observe_header(node, path, wait)


def make_policy(name: str, rng: RandomSource) -> RoutingPolicy:
    """The policy called `name` (one of POLICIES); ValueError for another name."""
    if name == "rendezvous":
        return RendezvousPolicy()
    if name == "classic":
        return ClassicPolicy(rng)
    raise ValueError(f"unknown routing policy {name!r}; choose one of {', '.join(POLICIES)}")
