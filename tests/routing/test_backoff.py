"""Back-off: busy nodes are avoided for a while, per function or for all, and peers share it."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlb.errors import LocalProtocolError, RemoteProtocolError
from fnlb.routing.backoff import (
    ALL_FUNCTIONS,
    MAX_WIRE_ENTRIES,
    Backoff,
    BackoffEntry,
    BackoffPolicy,
    decode_entries,
    encode_entries,
    pack_entries,
)

T = 1_800_000_000.0  # wall-clock seconds


def test_nothing_is_avoided_at_first() -> None:
    b = Backoff()
    assert not b.avoided("f", "n1", T)
    assert b.entries(T) == []


def test_a_busy_node_is_avoided_for_that_function_only_and_for_a_while() -> None:
    b = Backoff()
    assert b.busy("f", "n1", T) == T + 1.0
    assert b.avoided("f", "n1", T + 0.5)
    assert not b.avoided("g", "n1", T + 0.5)
    assert not b.avoided("f", "n2", T + 0.5)
    assert not b.avoided("f", "n1", T + 1.0)


@pytest.mark.parametrize(
    ("busy_in_a_row", "span"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 15.0), (9, 15.0)]
)
def test_busy_answers_in_a_row_double_the_time_up_to_max(busy_in_a_row: int, span: float) -> None:
    b = Backoff()
    now = T
    spans = []
    for _ in range(busy_in_a_row):
        until = b.busy("f", "n1", now)
        spans.append(until - now)
        now = until  # the probe after the avoidance is busy again
    assert spans[-1] == pytest.approx(span)


def test_retry_after_caps_the_avoidance() -> None:
    b = Backoff(BackoffPolicy(first_s=4.0, max_s=30.0))
    assert b.busy("f", "n1", T, retry_after_s=2.0) == T + 2.0


def test_a_success_ends_the_streak() -> None:
    b = Backoff()
    b.busy("f", "n1", T)
    b.busy("f", "n1", T + 1)
    b.finished("f", "n1", None, T + 3)
    assert b.busy("f", "n1", T + 4) == T + 5.0


def test_a_node_busy_for_two_functions_is_avoided_for_all() -> None:
    b = Backoff()
    b.busy("f", "n1", T)
    assert not b.avoided("h", "n1", T + 0.1)
    b.busy("g", "n1", T + 0.2)
    assert b.avoided("h", "n1", T + 0.5)
    assert not b.avoided("h", "n1", T + 1.0)  # until the first of the two ends
    assert not b.avoided("h", "n2", T + 0.5)
    assert BackoffEntry("n1", ALL_FUNCTIONS, T + 1.0) in b.entries(T + 0.5)


def test_climbing_waits_make_a_node_avoided_and_a_fast_probe_brings_it_back() -> None:
    b = Backoff(BackoffPolicy(slow_wait_s=1.0))
    b.finished("f", "n1", 0.05, T)
    b.finished("f", "n1", 1.5, T + 0.1)  # one slow call: the decayed mean stays low
    assert not b.avoided("f", "n1", T + 0.2)
    for k in range(6):
        b.finished("f", "n1", 2.0, T + 0.3 + 0.01 * k)
    assert b.avoided("f", "n1", T + 0.5)
    assert not b.avoided("f", "n1", T + 2.0)
    b.finished("f", "n1", 0.01, T + 2.0)  # the probe is fast: judged afresh
    b.finished("f", "n1", 0.01, T + 2.1)
    assert not b.avoided("f", "n1", T + 2.2)
    b.finished("f", "n1", None, T + 3)  # no header: nothing learnt
    assert not b.avoided("f", "n1", T + 3.1)


def _typical(b: Backoff, fn: str, node: str, answer_s: float, calls: int, at: float) -> float:
    """`calls` answers of `fn` from `node`, each `answer_s`, 10 ms apart; returns the time."""
    for k in range(calls):
        b.finished(fn, node, 0.0, at + 0.01 * k, answer_s)
    return at + 0.01 * calls


def test_a_node_whose_path_got_slow_is_avoided_longer_while_it_stays_slow() -> None:
    b = Backoff()
    t = _typical(b, "f", "n1", 0.05, 10, T)
    b.finished("f", "n1", 0.0, t, 2.05)  # one slow answer may be the function's own
    assert not b.avoided("f", "n1", t)
    b.finished("f", "n1", 0.0, t + 0.01, 2.05)  # two in a row: the node
    assert b.avoided("f", "n1", t + 0.02)
    assert not b.avoided("g", "n1", t + 0.02)  # for f only, so far
    assert not b.avoided("f", "n1", t + 1.02)
    # answers of calls sent before the avoidance keep arriving slow: it doubles
    b.finished("f", "n1", 0.0, t + 0.5, 2.05)
    assert b.avoided("f", "n1", t + 2.4)
    b.finished("f", "n1", 0.0, t + 0.6, 2.05)
    assert b.avoided("f", "n1", t + 4.5)
    # a fast probe ends the streak; the avoidance in force runs out as set
    b.finished("f", "n1", 0.0, t + 5.0, 0.05)
    b.finished("f", "n1", 0.0, t + 5.1, 2.05)
    assert not b.avoided("f", "n1", t + 5.2)  # a single slow answer again: not yet


def test_a_slow_path_for_two_functions_avoids_the_node_for_all() -> None:
    b = Backoff()
    t = _typical(b, "f", "n1", 0.02, 10, T)
    t = _typical(b, "g", "n1", 0.08, 10, t)
    for fn in ("f", "g", "f", "g"):
        b.finished(fn, "n1", 0.0, t, 2.1)
    assert b.avoided("h", "n1", t + 0.1)
    assert not b.avoided("h", "n2", t + 0.1)


def test_what_the_node_waited_for_a_container_is_not_the_path() -> None:
    """A cold start or a queue shows in the wait header: that is load, not a slow path."""
    b = Backoff(BackoffPolicy(slow_wait_s=100.0))
    t = _typical(b, "f", "n1", 0.05, 10, T)
    for k in range(5):
        b.finished("f", "n1", 2.0, t + 0.01 * k, 2.05)
    assert not b.avoided("f", "n1", t + 0.1)


def test_slow_but_not_seconds_slower_is_not_a_slow_node() -> None:
    """A cold start on a server without the wait header (newer Fn) adds ~0.3 s: not slow."""
    b = Backoff()
    t = _typical(b, "f", "n1", 0.02, 10, T)
    for k in range(5):
        b.finished("f", "n1", None, t + 0.01 * k, 0.35)
    assert not b.avoided("f", "n1", t + 0.1)


def test_a_function_that_became_slower_everywhere_is_learnt() -> None:
    """Its typical time follows slow answers too, slowly: after a while they are normal."""
    b = Backoff()
    t = _typical(b, "f", "n1", 0.05, 10, T)
    t = _typical(b, "f", "n2", 2.0, 400, t + 60)
    b.expire(t + 60)
    assert not b.avoided("f", "n2", t + 60)
    t = _typical(b, "f", "n2", 2.0, 2, t + 60)
    assert not b.avoided("f", "n2", t)


def test_without_a_measured_answer_time_nothing_is_judged() -> None:
    b = Backoff()
    for k in range(20):
        b.finished("f", "n1", 0.0, T + k, None)
    for k in range(5):
        b.finished("f", "n1", 0.0, T + 30 + k, None)
    assert not b.avoided("f", "n1", T + 36)


def test_entries_made_here_are_queued_for_gossip_once() -> None:
    b = Backoff()
    b.busy("f", "n1", T)
    b.busy("g", "n1", T)
    updates = b.take_updates()
    assert {(e.node, e.fn) for e in updates} == {("n1", "f"), ("n1", "g"), ("n1", "")}
    assert b.take_updates() == []


def test_peers_entries_are_merged_not_echoed_and_clamped() -> None:
    a, b = Backoff(), Backoff()
    a.busy("f", "n1", T)
    assert b.merge(a.take_updates(), T + 0.1) == 1
    assert b.avoided("f", "n1", T + 0.5)
    assert b.take_updates() == []  # learnt from a peer: not sent on
    assert b.merge([BackoffEntry("n1", "f", T + 0.5)], T + 0.2) == 0  # an earlier end loses
    # a peer with a clock far ahead cannot pin a node for long
    b.merge([BackoffEntry("n2", "", T + 10_000)], T)
    assert b.avoided("x", "n2", T + 14.9)
    assert not b.avoided("x", "n2", T + 15.0)
    assert b.merge([BackoffEntry("n3", "f", T - 1)], T) == 0  # already over


def test_expire_frees_what_has_ended() -> None:
    b = Backoff()
    for k in range(100):
        b.busy(f"f{k}", "n1", T)
    assert b.expire(T + 0.5) == 0
    assert b.expire(T + 100) == 101  # 100 pairs and the node-wide entry
    assert b.entries(T + 100) == []


def test_records_are_bounded() -> None:
    b = Backoff(BackoffPolicy(max_entries=10))
    for k in range(50):
        b.busy(f"f{k}", f"n{k}", T)
    assert b.busy("f0", "n0", T + 0.5) == T + 1.5  # f0's streak was forgotten


def test_bad_policies_are_refused() -> None:
    for bad in (
        BackoffPolicy(first_s=0),
        BackoffPolicy(first_s=20, max_s=10),
        BackoffPolicy(node_wide_after=0),
        BackoffPolicy(slow_wait_s=0),
        BackoffPolicy(max_entries=0),
        BackoffPolicy(slow_path_ratio=1.0),
        BackoffPolicy(slow_path_s=-1),
    ):
        with pytest.raises(LocalProtocolError):
            Backoff(bad)


def test_entries_round_trip_through_the_wire_format() -> None:
    entries = [BackoffEntry("10.0.0.1:8080", "r/app/f", T + 1.5), BackoffEntry("n2", "", T + 3)]
    data = encode_entries(entries)
    assert len(data) < 100
    assert decode_entries(data) == entries
    with pytest.raises(LocalProtocolError):
        encode_entries([entries[0]] * (MAX_WIRE_ENTRIES + 1))


def test_packing_splits_entries_into_messages_within_the_budget() -> None:
    entries = [BackoffEntry(f"10.0.0.{k}:8080", f"r/app/fn{k}", T + k) for k in range(100)]
    messages = pack_entries(entries, budget_bytes=1000)
    assert len(messages) > 1
    assert all(len(m) <= 1000 for m in messages)
    assert [e for m in messages for e in decode_entries(m)] == entries
    huge = BackoffEntry("n1", "x" * 1000, T)
    assert pack_entries([huge, entries[0]], budget_bytes=500) == [encode_entries([entries[0]])]


@pytest.mark.parametrize(
    "body",
    [
        [],
        [2, ["n", "f", 1]],
        [1, ["n", "f"]],
        [1, ["", "f", 1]],
        [1, ["n", 3, 1]],
        [1, ["n", "f", 1.5]],
        [1, ["n", "f", -1]],
        [1, ["n", "f", True]],
        {"a": 1},
        [1, *[["n", "f", 1]] * (MAX_WIRE_ENTRIES + 1)],
    ],
)
def test_malformed_messages_are_refused(body: object) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_entries(msgpack.packb(body, use_bin_type=True))


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_raise_remote_protocol_error_or_decode(data: bytes) -> None:
    try:
        entries = decode_entries(data)
    except RemoteProtocolError:
        return
    assert all(isinstance(e, BackoffEntry) and e.node for e in entries)


def test_a_sweep_between_two_slow_answers_keeps_the_streak() -> None:
    """The pump sweeps every second; two slow answers 0.7 s apart must still add up."""
    b = Backoff()
    t = 1000.0
    for _ in range(6):
        b.finished("f", "n", 0.0015, t, 0.0002)
        t += 0.01
    b.finished("f", "n", 0.0015, t, 0.7)
    t += 0.7
    b.expire(t)
    b.finished("f", "n", 0.0015, t, 0.7)
    assert b.avoided("f", "n", t + 0.1)
