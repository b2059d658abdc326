"""What routing decided for a call's first node, reported by the router when it picks.

A router knows, when it orders a call's candidates, whether the node it put first is the
function's home (its placed home, or the first of its rendezvous / jump-hash order), another
node of its hot set (spread), or a node beyond it (spill: the hot set was full or avoided, or
the classic walk moved on). It records that as a plain int in its `picked` attribute on every
`candidates` call; the proxy reads it right after (same event loop step, nothing in between)
and keeps it with the call, so the metrics need no classifier after the call (#14: that
classifier was a third of the metrics' cost per call).
"""

from __future__ import annotations

from typing import Final, Protocol

HOME: Final = 0
SPREAD: Final = 1
SPILL: Final = 2


class Picks(Protocol):
    """Who reports the outcome of its last pick (a router, or a policy that never moves)."""

    @property
    def picked(self) -> int:
        """HOME, SPREAD or SPILL: what the last `candidates` call put first."""
        ...


class FixedPick:
    """A `Picks` whose outcome never changes (rendezvous: the home always goes first)."""

    __slots__ = ("picked",)

    def __init__(self, picked: int = HOME) -> None:
        self.picked = picked
