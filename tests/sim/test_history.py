"""The history checker (fnlb.sim.history) on a CI-sized set of seeds; bench/agreement.py runs
hundreds, at N = 5, 20 and 100. A failure prints the minimal history that still fails."""

from __future__ import annotations

import pytest

from fnlb.peer.core import Peer
from fnlb.sim.history import Event, Plan, check, plan, shrink


def verdict(p: Plan) -> str:
    outcome = check(p)
    if outcome.ok:
        return ""
    small = shrink(p)
    return "\n".join([*check(small).failures[:5], "minimal history:", small.describe()])


@pytest.mark.parametrize("seed", range(12))
def test_histories_of_five_peers_keep_every_acknowledged_change_and_agree(seed: int) -> None:
    failure = verdict(plan(seed, 5))
    assert not failure, failure


@pytest.mark.parametrize("seed", [100, 101])
def test_histories_of_twenty_peers_keep_every_acknowledged_change_and_agree(seed: int) -> None:
    failure = verdict(plan(seed, 20, events=20, span_s=80.0))
    assert not failure, failure


def test_the_checker_catches_seeds_that_beat_deletes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker can fail: with the old seeding (fresh stamps for addresses with no entry)
    it finds a deleted node back on every peer, and shrinks the history to the three events
    of issue #11's reproduction: a delete, a crash, a restart without state nor anyone to
    join."""

    def old_seed_nodes(self: Peer, now_ms: int) -> None:
        pending, self._pending_seed = self._pending_seed, None
        for node in pending or ():
            if self.state.nodes.get(node) is None:
                self.state.add_node(node, now_ms)
        self._nodes_changed()

    monkeypatch.setattr(Peer, "seed_nodes", old_seed_nodes)
    failing = plan(12, 5, events=12, span_s=60.0)
    assert not check(failing).ok
    small = shrink(failing)
    assert [e.kind for e in small.events] == ["delete", "crash", "restart-stateless"]
    assert any("is back" in f for f in check(small).failures)


def test_shrinking_keeps_only_the_events_the_failure_needs() -> None:
    p = Plan(
        1,
        5,
        0.0,
        (0,) * 5,
        tuple(Event(float(i), "put" if i % 3 else "fresh", ("p0", "x:1")) for i in range(9)),
    )
    small = shrink(p, fails=lambda q: sum(e.kind == "fresh" for e in q.events) >= 2)
    assert [e.kind for e in small.events] == ["fresh", "fresh"]
