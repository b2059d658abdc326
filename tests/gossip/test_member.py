"""The sans-I/O member on its own: bytes and `now` in, datagrams, streams and events out."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlb.errors import LocalProtocolError
from fnlb.gossip import codec
from fnlb.gossip.broadcasts import retransmit_limit
from fnlb.gossip.delegate import RecordingDelegate
from fnlb.gossip.member import EventKind, Member, MemberEvent, push_pull_interval
from fnlb.gossip.messages import (
    Ack,
    Addr,
    Alive,
    DatagramMessage,
    Dead,
    IndirectPing,
    MemberState,
    Nack,
    Ping,
    PushPull,
    PushPullEntry,
    Suspect,
)
from fnlb.gossip.profile import GossipProfile
from tests.gossip.test_codec import datagram_messages, metas

PROFILE = GossipProfile.fnlb_default()
A: Addr = ("10.0.0.1", 7946)
B: Addr = ("10.0.0.2", 7946)
PEER: Addr = ("10.0.0.9", 7946)


def member(
    name: str = "a", addr: Addr = A, seed: int = 1, delegate: RecordingDelegate | None = None
) -> Member:
    m = Member(name, addr, PROFILE, random.Random(seed), delegate or RecordingDelegate())
    m.join([], 0.0)
    return m


def packet(*msgs: DatagramMessage) -> bytes:
    return codec.encode_packet([codec.encode_message(x) for x in msgs])


def state_of(m: Member, name: str) -> MemberState | None:
    info = m.member(name)
    return None if info is None else info.state


def sent(m: Member, now: float = 0.0) -> list[tuple[list[DatagramMessage], Addr]]:
    return [(codec.decode_packet(d), addr) for d, addr in m.datagrams_to_send(now)]


def drain_events(m: Member) -> list[MemberEvent]:
    out = []
    while (ev := m.next_event()) is not None:
        out.append(ev)
    return out


def test_ping_is_answered_with_ack_to_the_sender() -> None:
    m = member()
    m.datagrams_to_send(0.0)
    m.receive_datagram(packet(Ping(42, "a")), PEER, 1.0)
    out = sent(m)
    assert len(out) == 1
    msgs, addr = out[0]
    assert addr == PEER
    assert msgs[0] == Ack(42)


def test_ping_for_another_name_is_dropped_as_misdirected() -> None:
    m = member()
    m.receive_datagram(packet(Ping(1, "someone-else")), PEER, 1.0)
    assert m.drops["misdirected"] == 1


def test_garbage_is_counted_by_reason_and_never_raises() -> None:
    m = member()
    for data in (b"", b"\x02junk", b"\x01\xc1", b"\x01\x91\x91\x63", bytes(range(256))):
        m.receive_datagram(data, PEER, 1.0)
    assert m.drops["empty"] == 1
    assert m.drops["bad_version"] == 2
    assert m.drops["malformed"] == 1
    assert m.drops["unknown_type"] == 1


def test_suspicion_of_ourselves_is_refuted_with_a_higher_incarnation() -> None:
    m = member()
    m.datagrams_to_send(0.0)
    m.receive_datagram(packet(Suspect(0, "a", "b")), PEER, 1.0)
    assert m.incarnation == 1
    assert m.state is MemberState.ALIVE
    m.handle_timer(1.0)  # a gossip round would carry it; a ping's ack carries it too
    m.receive_datagram(packet(Ping(7, "a")), PEER, 1.0)
    carried = [x for msgs, _ in sent(m) for x in msgs]
    assert Alive(1, "a", A, b"") in carried


def test_a_repeated_accusation_sends_our_refutation_afresh_even_while_it_is_queued() -> None:
    """The accuser missed our Alive: it must get every transmission again, not the one or
    two left (3 peers at 20 % loss lost both, and a live member was declared dead)."""
    m = member()
    m.receive_datagram(packet(Suspect(0, "a", "b")), PEER, 1.0)
    refutation = Alive(1, "a", A, b"")
    limit = retransmit_limit(1, PROFILE.retransmit_mult)

    def acks_carrying_it(pings: int, seq: int) -> int:
        carried = 0
        for i in range(pings):
            m.receive_datagram(packet(Ping(seq + i, "a")), PEER, 1.0)
            carried += sum(refutation in msgs for msgs, _ in sent(m))
        return carried

    assert acks_carrying_it(limit - 1, 100) == limit - 1  # one transmission left
    m.receive_datagram(packet(Suspect(0, "a", "c")), PEER, 1.0)  # still accused
    assert acks_carrying_it(limit + 2, 200) == limit


def test_we_never_accept_our_own_death() -> None:
    m = member()
    m.receive_datagram(packet(Dead(5, "a", "b")), PEER, 1.0)
    assert m.state is MemberState.ALIVE
    assert m.incarnation == 6


def test_alive_suspect_dead_of_a_peer_and_events() -> None:
    m = member()
    m.receive_datagram(packet(Alive(3, "b", B, b"meta")), B, 1.0)
    m.receive_datagram(packet(Suspect(3, "b", "c")), PEER, 2.0)
    m.receive_datagram(packet(Alive(4, "b", B, b"meta")), B, 3.0)
    m.receive_datagram(packet(Alive(2, "b", B, b"older")), B, 3.5)  # stale: ignored
    m.receive_datagram(packet(Alive(5, "b", B, b"new")), B, 4.0)
    m.receive_datagram(packet(Dead(5, "b", "c")), PEER, 5.0)
    kinds = []
    while (ev := m.next_event()) is not None:
        kinds.append((ev.kind, ev.incarnation))
    assert kinds == [
        (EventKind.JOINED, 3),
        (EventKind.SUSPECT, 3),
        (EventKind.ALIVE, 4),
        (EventKind.UPDATED, 5),
        (EventKind.DEAD, 5),
    ]
    info = m.member("b")
    assert info is not None
    assert (info.state, info.incarnation, info.meta) == (MemberState.DEAD, 5, b"new")


def test_left_is_a_dead_message_from_the_node_itself() -> None:
    m = member()
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 1.0)
    m.receive_datagram(packet(Dead(2, "b", "b")), B, 2.0)
    assert state_of(m, "b") is MemberState.LEFT


def test_suspect_expires_into_dead_after_the_suspicion_timeout() -> None:
    m = member()
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 0.0)
    m.receive_datagram(packet(Suspect(1, "b", "c")), PEER, 10.0)
    # Group of 2: K = 0, so the minimum timeout applies: 4 * 1 * 0.4 s.
    t = m.next_timer()
    while t is not None and t < 11.7:
        m.handle_timer(t)
        t = m.next_timer()
    assert state_of(m, "b") is MemberState.DEAD


def test_ping_to_a_suspect_carries_the_suspicion() -> None:
    m = member()
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 0.0)
    m.receive_datagram(packet(Suspect(1, "b", "c")), PEER, 0.0)
    m.datagrams_to_send(0.0)
    now = 0.0
    for _ in range(20):
        now = m.next_timer() or now
        m.handle_timer(now)
        pings = [
            msgs
            for msgs, addr in sent(m, now)
            if addr == B and any(isinstance(x, Ping) for x in msgs)
        ]
        if pings:
            assert Suspect(1, "b", "a") in pings[0]
            return
    pytest.fail("b was never probed")


def test_every_datagram_fits_the_packet_budget_with_piggybacked_broadcasts() -> None:
    m = member()
    for i in range(200):
        m.receive_datagram(
            packet(Alive(1, f"node-{i:03d}", ("10.1.0.1", 1000 + i), b"m" * 100)), PEER, 0.0
        )
    m.datagrams_to_send(0.0)
    m.receive_datagram(packet(Ping(1, "a")), PEER, 0.1)
    out = m.datagrams_to_send(0.1)
    assert len(out) == 1
    data = out[0][0]
    assert 1200 < len(data) <= PROFILE.packet_budget
    assert len(codec.decode_packet(data)) > 5


def test_join_contacts_seeds_over_a_stream_and_merges_their_state() -> None:
    d = RecordingDelegate()
    m = Member("a", A, PROFILE, random.Random(1), d)
    m.join([B], 0.0)
    joined_before = m.joined
    (req,) = m.stream_requests(0.0)
    assert req.addr == B
    sent_state = codec.decode_stream(req.data)
    assert isinstance(sent_state, PushPull)
    assert sent_state.join
    reply = PushPull(
        False,
        (
            PushPullEntry("b", B, 3, MemberState.ALIVE, b""),
            PushPullEntry("a", A, 2, MemberState.ALIVE, b""),  # a previous life of ours
        ),
        b"remote-state",
    )
    m.handle_stream_response(req.id, codec.encode_stream(reply), 0.1)
    assert (joined_before, m.joined) == (False, True)
    assert state_of(m, "b") is MemberState.ALIVE
    assert m.incarnation == 3  # refuted the stale view of ourselves
    assert d.state == {b"remote-state"}


def test_join_is_retried_until_a_seed_answers() -> None:
    m = Member("a", A, PROFILE, random.Random(1))
    m.join([B], 0.0)
    (req,) = m.stream_requests(0.0)
    m.handle_stream_failure(req.id, 0.01)
    t = m.next_timer()
    while t is not None and t < PROFILE.join_retry_interval + 0.1:
        m.handle_timer(t)
        t = m.next_timer()
    retries = [r for r in m.stream_requests(t or 0.0) if r.addr == B]
    assert len(retries) == 1


def test_a_dead_row_in_push_pull_is_merged_as_a_suspicion() -> None:
    m = member()
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 0.0)
    data = codec.encode_stream(
        PushPull(False, (PushPullEntry("b", B, 1, MemberState.DEAD, b""),), b"")
    )
    reply = m.handle_stream_request(data, PEER, 1.0)
    assert reply is not None
    assert state_of(m, "b") is MemberState.SUSPECT


def test_metadata_is_bounded() -> None:
    with pytest.raises(LocalProtocolError):
        Member("a", A, PROFILE, random.Random(1), meta=b"x" * 513)
    m = member()
    m.set_meta(b"x" * 512, 1.0)
    assert m.incarnation == 1
    with pytest.raises(LocalProtocolError):
        m.set_meta(b"x" * 513, 1.0)


def test_user_broadcast_is_delivered_once_and_regossiped() -> None:
    from fnlb.gossip.messages import UserBroadcast

    d = RecordingDelegate()
    m = member(delegate=d)
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 0.0)
    msg = UserBroadcast("c", b"k", b"v1")
    m.receive_datagram(packet(msg), PEER, 0.1)
    m.receive_datagram(packet(msg), PEER, 0.2)
    assert d.received == [("c", b"k", b"v1")]
    m.handle_timer(1.0)
    carried = [x for msgs, _ in sent(m, 1.0) for x in msgs]
    assert msg in carried


def test_a_direct_message_goes_once_to_each_live_member_and_is_never_relayed() -> None:
    from fnlb.gossip.messages import UserDirect

    d = RecordingDelegate()
    m = member(delegate=d)
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 0.0)
    m.receive_datagram(packet(Alive(1, "c", PEER, b"")), PEER, 0.0)
    m.receive_datagram(packet(Dead(1, "c", "x")), PEER, 0.0)
    m.datagrams_to_send(0.0)
    d.send_direct(b"l/a", b"figures")
    m.handle_timer(1.0)
    mine = UserDirect("a", b"l/a", b"figures")
    to = [addr for msgs, addr in sent(m, 1.0) if mine in msgs]
    assert to == [B]  # the live member only, once

    relay = RecordingDelegate()
    r = member(delegate=relay)
    r.receive_datagram(packet(Alive(1, "b", B, b"")), B, 0.0)
    theirs = UserDirect("c", b"l/c", b"figures")
    r.receive_datagram(packet(theirs), PEER, 0.1)
    assert relay.received == [("c", b"l/c", b"figures")]
    r.handle_timer(1.0)
    assert not [x for msgs, _ in sent(r, 1.0) for x in msgs if x == theirs]


def test_a_message_for_one_member_goes_to_it_alone_and_a_dead_one_is_skipped() -> None:
    from fnlb.gossip.messages import UserDirect

    d = RecordingDelegate()
    m = member(delegate=d)
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 0.0)
    m.receive_datagram(packet(Alive(1, "c", PEER, b"")), PEER, 0.0)
    m.receive_datagram(packet(Dead(1, "c", "x")), PEER, 0.0)
    m.datagrams_to_send(0.0)
    d.send_to("b", b"u/a", b"sum")
    d.send_to("c", b"u/a", b"sum")  # dead
    d.send_to("nobody", b"u/a", b"sum")
    m.handle_timer(1.0)
    mine = UserDirect("a", b"u/a", b"sum")
    assert [addr for msgs, addr in sent(m, 1.0) if mine in msgs] == [B]
    assert m.stats["sent_to"] == 1
    assert m.drops["send_to_not_live"] == 2


def test_a_hostile_huge_incarnation_is_refuted_without_breaking_the_encoder() -> None:
    m = member()
    m.receive_datagram(packet(Suspect(codec.MAX_COUNTER, "a", "evil")), PEER, 1.0)
    assert m.incarnation == codec.MAX_COUNTER + 1
    m.receive_datagram(packet(Ping(1, "a")), PEER, 1.1)
    assert m.datagrams_to_send(1.1)  # still encodes (uint64)


@pytest.mark.parametrize(
    ("n", "expected"), [(1, 30.0), (32, 30.0), (33, 60.0), (64, 60.0), (65, 90.0), (500, 150.0)]
)
def test_push_pull_interval_stretches_beyond_32_members(n: int, expected: float) -> None:
    assert push_pull_interval(n, 30.0) == expected


def test_a_stale_accusation_gets_our_current_alive_on_the_ack() -> None:
    """The buddy ping of an accuser that missed our refutation is answered with it."""
    m = member()
    m.receive_datagram(packet(Suspect(0, "a", "b")), PEER, 1.0)  # refuted: incarnation 1
    for _ in range(20):  # spend the refutation's retransmissions
        m.receive_datagram(packet(Ping(1, "a")), PEER, 1.1)
    m.datagrams_to_send(1.1)
    m.receive_datagram(packet(Suspect(0, "a", "b"), Ping(2, "a")), B, 2.0)
    ((msgs, addr),) = sent(m, 2.0)
    assert addr == B
    assert msgs[0] == Ack(2)
    assert Alive(1, "a", A, b"") in msgs


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.one_of(
                datagram_messages,
                # messages about the names this member knows, so they reach deep paths
                st.builds(
                    Suspect, st.integers(0, 5), st.sampled_from("abc"), st.sampled_from("abc")
                ),
                st.builds(Dead, st.integers(0, 5), st.sampled_from("abc"), st.sampled_from("abc")),
                st.builds(Alive, st.integers(0, 5), st.sampled_from("abc"), st.just(B), metas),
            ),
            st.floats(0.0, 2.0),
        ),
        max_size=30,
    )
)
def test_any_valid_message_sequence_keeps_the_invariants(
    inputs: list[tuple[DatagramMessage, float]],
) -> None:
    m = member()
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 0.0)
    now, last_incarnation = 0.0, 0
    for msg, dt in inputs:
        now += dt
        m.receive_datagram(packet(msg), PEER, now)
        t = m.next_timer()
        if t is not None and t <= now:
            m.handle_timer(now)
        for data, _ in m.datagrams_to_send(now):
            assert len(data) <= PROFILE.packet_budget
            codec.decode_packet(data)
        assert m.state is MemberState.ALIVE
        assert m.incarnation >= last_incarnation
        last_incarnation = m.incarnation


def test_a_broadcast_that_cannot_fit_a_packet_is_dropped_and_counted() -> None:
    d = RecordingDelegate()
    m = member(delegate=d)
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 0.0)
    limit = m.max_broadcast_size
    assert 1200 < limit < PROFILE.packet_budget
    d.broadcast(b"k", b"x" * (limit - 1))  # exactly the limit: fits
    d.broadcast(b"k2", b"x" * (limit - 1))  # one byte too many
    m.handle_timer(0.0)
    assert m.drops["local_broadcast_too_large"] == 1
    out = m.datagrams_to_send(0.0)
    assert out
    assert all(len(data) <= PROFILE.packet_budget for data, _ in out)


def test_a_newer_peers_unknown_message_type_does_not_drop_what_rides_with_it() -> None:
    # Rolling upgrade: a newer peer piggybacks a Left on a message type we do not know.
    m = member()
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 1.0)
    assert state_of(m, "b") is MemberState.ALIVE
    future = msgpack.packb([77, "b", b"key", b"payload"], use_bin_type=True)
    data = codec.encode_packet([future, codec.encode_message(Dead(2, "b", "b"))])
    m.receive_datagram(data, B, 2.0)
    assert state_of(m, "b") is MemberState.LEFT
    assert m.drops["unknown_type"] == 1


# --- Lifeguard awareness and round-robin probing, driven in virtual time --------------------


def group_member(peers: int, seed: int = 1) -> Member:
    """Member "a" that knows `peers` alive members p0, p1, ... at 10.0.1.i."""
    m = member(seed=seed)
    for i in range(peers):
        m.receive_datagram(packet(Alive(1, f"p{i}", (f"10.0.1.{i}", 7946), b"")), PEER, 0.0)
    return m


def drive(
    m: Member, until: float, *, fail_first: int = 0, nacks: int = 0
) -> list[tuple[float, str]]:
    """Run m's timers up to `until`, playing every peer; return (time, target) per probe.

    Peers ack every direct ping except the first `fail_first` probes'; asked for an indirect
    ping of a failing probe, the first `nacks` helpers answer with a nack. Streams (push-pull,
    the fallback stream ping) are never answered: they time out.
    """
    probes: list[tuple[float, str]] = []
    failing: set[int] = set()
    nacked: Counter[int] = Counter()
    for _ in range(100_000):
        t = m.next_timer()
        if t is None or t > until:
            return probes
        m.handle_timer(t)
        m.stream_requests(t)
        for data, addr in m.datagrams_to_send(t):
            for msg in codec.decode_packet(data):
                if isinstance(msg, Ping):
                    probes.append((t, msg.target))
                    if len(probes) <= fail_first:
                        failing.add(msg.seq)
                    else:
                        m.receive_datagram(packet(Ack(msg.seq)), addr, t)
                elif (
                    isinstance(msg, IndirectPing) and msg.seq in failing and nacked[msg.seq] < nacks
                ):
                    nacked[msg.seq] += 1
                    m.receive_datagram(packet(Nack(msg.seq)), addr, t)
    raise AssertionError("timers never reached `until`")  # pragma: no cover


@pytest.mark.parametrize(("nacks", "rise"), [(0, 3), (1, 2), (2, 1), (3, 0)])
def test_a_failed_probe_raises_awareness_by_the_missing_nacks(nacks: int, rise: int) -> None:
    # Lifeguard: of indirect_checks = 3 helpers asked, every one that did not nack is a sign
    # that *we* are the slow one.
    assert PROFILE.indirect_checks == 3
    m = group_member(5)
    [(start, _)] = drive(m, PROFILE.probe_interval - 1e-6, fail_first=1, nacks=nacks)
    drive(m, start + PROFILE.probe_interval - 1e-6, fail_first=1, nacks=nacks)
    assert m.awareness_score == 0  # the probe has not ended yet
    drive(m, start + PROFILE.probe_interval, fail_first=1, nacks=nacks)  # it ends: failed
    assert m.awareness_score == rise


def test_a_failed_probe_without_helpers_raises_awareness_by_one() -> None:
    m = group_member(1)  # nobody to ask for an indirect ping
    [(start, _)] = drive(m, PROFILE.probe_interval - 1e-6, fail_first=1)
    drive(m, start + PROFILE.probe_interval, fail_first=1)
    assert m.awareness_score == 1


def test_awareness_stretches_the_probe_interval_and_successful_probes_lower_it() -> None:
    m = group_member(5)
    probes = drive(m, 6.0, fail_first=1)  # 0 of 3 nacks: score 3, then every probe acked
    starts = [t for t, _ in probes]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    base = PROFILE.probe_interval
    # The first probe fails (score 0 -> 3); the probe that starts as it ends is followed 4
    # intervals later, and each acked probe lowers the score by one: 4x, 3x, 2x, then 1x.
    assert gaps[:5] == pytest.approx([base, 4 * base, 3 * base, 2 * base, base])
    assert gaps[5:] == pytest.approx([base] * len(gaps[5:]))
    assert m.awareness_score == 0


def test_a_refutation_raises_awareness_by_one() -> None:
    m = group_member(2)
    m.receive_datagram(packet(Suspect(0, "a", "p0")), PEER, 0.1)
    assert m.incarnation == 1
    assert m.awareness_score == 1
    m.receive_datagram(packet(Suspect(1, "a", "p1")), PEER, 0.2)
    assert m.awareness_score == 2


def test_round_robin_probes_each_live_member_once_per_pass_in_a_new_order() -> None:
    names = {f"p{i}" for i in range(10)}
    m = group_member(10, seed=7)
    probes = drive(m, 3 * 10 * PROFILE.probe_interval - 1e-6)
    targets = [target for _, target in probes]
    assert len(targets) == 30
    passes = [targets[i : i + 10] for i in range(0, 30, 10)]
    for one in passes:
        assert sorted(one) == sorted(names), "every member exactly once per pass"
    assert len({tuple(one) for one in passes}) == 3, "the order is reshuffled each pass"


def test_a_helper_nacks_by_the_requesters_deadline_when_it_is_sooner_than_its_own() -> None:
    lan = Member("h", A, GossipProfile.lan(), random.Random(1), RecordingDelegate())
    lan.join([], 0.0)
    # LAN's own nack delay: 80 % of its 0.5 s probe timeout.
    for start, nack_after_ms, delay in ((1.0, 120, 0.12), (3.0, None, 0.4), (5.0, 900, 0.4)):
        lan.receive_datagram(packet(IndirectPing(5, "t", B, True, nack_after_ms)), PEER, start)
        lan.datagrams_to_send(start)  # the relayed ping
        due = start + delay
        lan.handle_timer(due - 0.001)
        assert not any(isinstance(x, Nack) for msgs, _ in sent(lan, due) for x in msgs)
        lan.handle_timer(due)
        assert any(
            isinstance(x, Nack) and x.seq == 5 for msgs, _ in sent(lan, due) for x in msgs
        ), f"nack_after_ms={nack_after_ms}: no nack at {due}"


def test_a_live_peer_claiming_our_name_is_reported_once_and_refuted_each_time() -> None:
    m = member()
    claim = 3
    for _ in range(4):  # the twin answers each refutation with a higher incarnation
        m.receive_datagram(packet(Alive(claim, "a", B, b"")), PEER, 1.0)
        assert m.incarnation == claim + 1  # refuted
        claim = m.incarnation + 1
    conflicts = [e for e in drain_events(m) if e.kind is EventKind.CONFLICT]
    assert [(e.name, e.addr) for e in conflicts] == [("a", B)]
    assert m.stats["name_conflicts"] == 3  # every claim after the first refutation


def test_a_stale_rumour_of_our_old_address_is_refuted_without_a_conflict() -> None:
    m = member()  # restarted on A; gossip still carries our Alive from B at incarnation 5
    for _ in range(3):
        m.receive_datagram(packet(Alive(5, "a", B, b"")), PEER, 1.0)
    assert m.incarnation == 6
    assert not [e for e in drain_events(m) if e.kind is EventKind.CONFLICT]
    assert m.stats["name_conflicts"] == 0


def first_ping(m: Member) -> tuple[float, list[Ping]]:
    """Run `m`'s timers until it sends its first probe: when, and the Ping."""
    for _ in range(50):
        due = m.next_timer()
        assert due is not None
        m.handle_timer(due)
        pings = [x for msgs, _ in sent(m, due) for x in msgs if isinstance(x, Ping)]
        if pings:
            return due, pings
    raise AssertionError("no probe was sent")


def test_an_ack_not_drawn_for_the_open_probe_does_not_complete_it() -> None:
    # Issue #12: an Ack sealed for another peer, replayed here, completed this member's probe
    # of a crashed member, since every member numbered its probes 1, 2, 3... Now each probe
    # draws its number at random: the acks a counting peer would send never match it.
    m = member()
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 0.0)
    due, pings = first_ping(m)
    assert pings[0].seq > 1000  # (so the acks below are all replays from elsewhere)
    for seq in range(1, 1001):  # what members counting their probes sent each other
        m.receive_datagram(packet(Ack(seq)), B, due + 0.01)
    for _ in range(20):  # let the probe, the indirect round and the suspicion run out
        when = m.next_timer()
        assert when is not None
        m.handle_timer(when)
        m.datagrams_to_send(when)
    assert state_of(m, "b") in (MemberState.SUSPECT, MemberState.DEAD)


def test_probe_numbers_differ_between_members_and_between_lives_of_one() -> None:
    # Two members, and one member restarted under the same name (it joins at another time):
    # their first probes carry different numbers, none of them a small count.
    def first_seq(name: str, joined_at: float) -> int:
        m = Member(name, A, PROFILE, random.Random(1), RecordingDelegate())
        m.join([], joined_at)
        m.receive_datagram(packet(Alive(1, "b", B, b"")), B, joined_at)
        return first_ping(m)[1][0].seq

    seqs = {first_seq("a", 0.0), first_seq("c", 0.0), first_seq("a", 5000.0)}
    assert len(seqs) == 3
    assert min(seqs) > 1000


def test_a_push_pull_suspicion_is_hearsay_not_rebroadcast_nor_a_confirmation() -> None:
    """Issue #11 defect 8: a Suspect/Dead row from a push-pull was rebroadcast with this
    member as the accuser and counted elsewhere as an independent confirmation."""
    m = member()
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 0.0)
    m.receive_datagram(packet(Alive(1, "c", PEER, b"")), PEER, 0.0)
    for i in range(6):  # enough members for Lifeguard to expect confirmations (k > 0)
        m.receive_datagram(packet(Alive(1, f"o{i}", (f"10.0.1.{i}", 7946), b"")), PEER, 0.0)
    m.datagrams_to_send(0.0)
    data = codec.encode_stream(
        PushPull(False, (PushPullEntry("b", B, 1, MemberState.SUSPECT, b""),), b"")
    )
    m.handle_stream_request(data, PEER, 1.0)
    assert state_of(m, "b") is MemberState.SUSPECT
    m.handle_timer(1.0)  # a gossip round, and our own probe of b starts (not yet failed)
    to_others = [x for msgs, addr in sent(m, 1.0) if addr != B for x in msgs]
    assert not [x for x in to_others if isinstance(x, Suspect)]  # (b itself is told)
    # Every real accuser's Suspect counts, our own failed probe's included.
    m.receive_datagram(packet(Suspect(1, "b", "c")), PEER, 1.5)
    m.receive_datagram(packet(Suspect(1, "b", "a")), PEER, 1.5)
    assert m._suspicions["b"].confirmations == 2


def test_broadcasts_ride_direct_messages_to_random_peers_not_the_same_first_ones() -> None:
    """Issue #11: direct messages (load digests, to every live member) went out in table
    order, so the broadcasts riding on them spent their few retransmissions on the same first
    peers of every member, and the last peers waited seconds for a node change."""
    from fnlb.gossip.messages import UserBroadcast

    carried_to = set()
    for seed in range(4):
        d = RecordingDelegate()
        m = member(seed=seed, delegate=d)
        for i in range(20):
            m.receive_datagram(packet(Alive(1, f"o{i}", (f"10.0.1.{i}", 7946), b"")), PEER, 0.0)
        m.datagrams_to_send(0.0)
        d.broadcast(b"n/x", b"change")
        d.send_direct(b"l/a", b"figures")
        m.handle_timer(1.0)
        mine = UserBroadcast("a", b"n/x", b"change")
        carried_to.add(frozenset(addr for msgs, addr in sent(m, 1.0) if mine in msgs))
    assert len(carried_to) > 1


def test_a_message_for_one_member_spends_no_broadcasts_on_it() -> None:
    """The load tree sends to the same few members every period: broadcasts riding on those
    datagrams spent their retransmissions on members that had them, and at N=200 with a
    wider tree (8 children) the start's Alives no longer reached everyone (docs/gossip.md)."""
    from fnlb.gossip.messages import UserDirect

    d = RecordingDelegate()
    m = member(delegate=d)
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 0.0)
    m.receive_datagram(packet(Alive(1, "c", PEER, b"")), PEER, 0.0)  # queued, to relay
    m.datagrams_to_send(0.0)
    d.send_to("b", b"u/a", b"sum")
    m.handle_timer(1.0)
    mine = UserDirect("a", b"u/a", b"sum")
    datagrams = sent(m, 1.0)
    assert [msgs for msgs, _ in datagrams if mine in msgs] == [[mine]]
    relayed = [x for msgs, _ in datagrams for x in msgs if isinstance(x, Alive) and x.node == "c"]
    assert relayed  # gossip's own round still carries the broadcast


def pushed_pulls(m: Member, now: float) -> list[tuple[float, Addr, int]]:
    """(time, partner, request id) of each push-pull stream `m` opens now (no joins, no pings)."""
    out = []
    for req in m.stream_requests(now):
        msg = codec.decode_stream(req.data)
        if isinstance(msg, PushPull) and not msg.join:
            out.append((now, req.addr, req.id))
    return out


def quiet_pair(seed: int = 1) -> Member:
    """A member that knows one other alive member (b) and never probes it within a minute,
    so b stays alive and every push-pull goes to it."""
    profile = PROFILE.replace(probe_interval=600.0, probe_timeout=1.0)
    m = Member("a", A, profile, random.Random(seed), RecordingDelegate())
    m.join([], 0.0)
    m.receive_datagram(packet(Alive(1, "b", B, b"")), B, 0.0)
    m.stream_requests(0.0)
    return m


def run_timers(m: Member, start: float, until: float) -> list[tuple[float, Addr, int]]:
    out = []
    t = m.next_timer()
    while t is not None and t <= until:
        t = max(t, start)
        m.handle_timer(t)
        out += pushed_pulls(m, t)
        t = m.next_timer()
    return out


def test_an_asked_push_pull_goes_out_at_once_and_leaves_the_regular_schedule_as_it_was() -> None:
    """The owner (a peer that wants the cluster's state now) asks for an exchange: one
    stream to an alive member at once, carrying the full state and merging the answer; the
    regular exchanges come when they would have come without it."""
    asked, twin = quiet_pair(), quiet_pair()
    regular = run_timers(twin, 0.0, 70.0)
    assert len(regular) >= 2  # every 30 s
    before = run_timers(asked, 0.0, 1.0)
    assert asked.request_push_pull(1.0)
    ((t, addr, rid),) = pushed_pulls(asked, 1.0)
    assert (t, addr) == (1.0, B)
    assert asked.stats["push_pull_asked"] == 1
    answer = PushPull(False, (PushPullEntry("b", B, 1, MemberState.ALIVE, b""),), b"theirs")
    asked.handle_stream_response(rid, codec.encode_stream(answer), 1.1)
    assert asked._delegate.state == {b"theirs"}  # type: ignore[attr-defined]
    after = run_timers(asked, 1.1, 70.0)
    assert [(t, a) for t, a, _ in before + after] == [(t, a) for t, a, _ in regular]


def test_asking_again_before_the_asked_exchange_ended_queues_nothing() -> None:
    m = quiet_pair()
    assert m.request_push_pull(1.0)
    (first,) = pushed_pulls(m, 1.0)
    assert not m.request_push_pull(1.2)
    assert not m.request_push_pull(1.3)
    assert pushed_pulls(m, 1.3) == []
    m.handle_stream_failure(first[2], 1.5)  # refused, or timed out: may ask again
    assert m.request_push_pull(1.6)
    (second,) = pushed_pulls(m, 1.6)
    empty = PushPull(False, (), b"")
    m.handle_stream_response(second[2], codec.encode_stream(empty), 1.7)  # answered
    assert m.request_push_pull(1.8)
    assert len(pushed_pulls(m, 1.8)) == 1
    assert m.stats["push_pull_asked"] == 3


def test_asking_with_no_other_alive_member_is_a_no_op() -> None:
    alone = member()
    assert not alone.request_push_pull(1.0)
    assert alone.stream_requests(1.0) == []
    unjoined = Member("a", A, PROFILE, random.Random(1))
    assert not unjoined.request_push_pull(1.0)
    m = quiet_pair()
    m.receive_datagram(packet(Suspect(1, "b", "c")), B, 1.0)
    assert not m.request_push_pull(1.1)  # push-pull goes to alive members only
    left = quiet_pair()
    left.leave(1.0)
    assert not left.request_push_pull(1.1)
    assert left.stream_requests(1.1) == []
