"""Gossip envelopes: keys, rotation, cluster label, tampering, replay and arbitrary bytes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlb.errors import LocalProtocolError, RemoteProtocolError
from fnlb.gossip.crypto import (
    AESGCM_OVERHEAD,
    DROP_REASONS,
    PLAINTEXT_OVERHEAD,
    GossipCipher,
    Keyring,
    key_id,
)

OLD = bytes(range(32))
NEW = bytes(range(100, 132))
NOW = 1_800_000_000.0


#: one counter for every cipher in this module: nonces must be unique across senders that
#: share a key (os.urandom gives that in production), and deterministic here.
_NONCES = itertools.count(1)


def counting_nonce(n: int) -> bytes:
    return next(_NONCES).to_bytes(n, "big")


def cipher(
    *keys: bytes,
    label: str = "prod",
    window: float = 30.0,
    max_remembered: int = 65536,
    max_envelope: int = 1 << 20,
) -> GossipCipher:
    return GossipCipher(
        Keyring(keys) if keys else None,
        label,
        window=window,
        max_remembered=max_remembered,
        max_envelope=max_envelope,
        nonce_source=counting_nonce,
    )


def reason(c: GossipCipher, packet: bytes, now: float = NOW) -> str:
    with pytest.raises(RemoteProtocolError) as info:
        c.open(packet, now)
    assert info.value.reason in DROP_REASONS
    return info.value.reason


# --- keyring ---------------------------------------------------------------------------------


def test_keyring_primary_seals_all_decrypt_and_order_is_primary_first() -> None:
    ring = Keyring([OLD])
    assert ring.install(NEW) is True
    assert ring.install(NEW) is False  # retrying an install is harmless
    assert ring.keys() == [OLD, NEW]
    assert ring.primary == OLD
    ring.use(NEW)
    assert ring.keys() == [NEW, OLD]
    assert ring.key_ids() == [key_id(NEW), key_id(OLD)]


@pytest.mark.parametrize("size", [16, 24, 32])
def test_keyring_accepts_every_aes_key_size(size: int) -> None:
    ring = Keyring([b"k" * size])
    c = GossipCipher(ring, "x")
    assert c.open(c.seal(b"hi", NOW), NOW) == b"hi"


@pytest.mark.parametrize("size", [0, 8, 15, 17, 31, 33, 64])
def test_keyring_refuses_keys_of_other_sizes(size: int) -> None:
    with pytest.raises(LocalProtocolError, match="16, 24 or 32"):
        Keyring([b"k" * size])


def test_keyring_refuses_using_an_uninstalled_key_and_removing_the_primary() -> None:
    ring = Keyring([OLD])
    with pytest.raises(LocalProtocolError, match="not installed"):
        ring.use(NEW)
    with pytest.raises(LocalProtocolError, match="primary"):
        ring.remove(OLD)
    assert ring.remove(NEW) is False
    with pytest.raises(LocalProtocolError):
        Keyring([])


def test_key_id_is_short_stable_and_does_not_contain_the_key() -> None:
    kid = key_id(OLD)
    assert len(kid) == 12
    assert kid == key_id(bytes(OLD))
    assert kid != key_id(NEW)
    assert OLD.hex()[:12] != kid


# --- rotation --------------------------------------------------------------------------------


def test_rotation_in_three_steps_never_drops_a_packet() -> None:
    """install NEW everywhere, use NEW everywhere, remove OLD everywhere: as memberlist does.

    Peers are updated one at a time, so at each intermediate step some peers are ahead of
    others; every packet between any two of them must still open.
    """
    peers = [cipher(OLD, label="prod") for _ in range(3)]
    now = NOW

    def all_pairs_talk() -> None:
        nonlocal now
        for a, b in itertools.permutations(peers, 2):
            now += 0.001
            assert b.open(a.seal(b"ping", now), now) == b"ping"

    all_pairs_talk()
    for step in ("install", "use", "remove"):
        for p in peers:
            assert p.keyring is not None
            if step == "install":
                p.keyring.install(NEW)
            elif step == "use":
                p.keyring.use(NEW)
            else:
                p.keyring.remove(OLD)
            all_pairs_talk()
    # after rotation, a packet sealed under OLD (a straggler, or an attacker who stole OLD)
    # is refused
    straggler = cipher(OLD, label="prod")
    assert reason(peers[0], straggler.seal(b"x", now), now) == "auth_failed"
    assert peers[0].opened_by_key.get(key_id(NEW), 0) > 0


def test_opened_by_key_tells_when_an_old_key_is_no_longer_used() -> None:
    receiver = cipher(NEW, OLD)
    old_sender, new_sender = cipher(OLD), cipher(NEW)
    receiver.open(old_sender.seal(b"a", NOW), NOW)
    receiver.open(new_sender.seal(b"b", NOW), NOW)
    receiver.open(new_sender.seal(b"c", NOW), NOW)
    assert receiver.opened_by_key == {key_id(OLD): 1, key_id(NEW): 2}
    detail = receiver.open_detailed(new_sender.seal(b"d", NOW + 1), NOW + 1)
    assert detail.key_id == key_id(NEW)
    assert detail.sent_at == pytest.approx(NOW + 1)


# --- cluster label and tampering -------------------------------------------------------------


def test_another_cluster_name_is_refused_with_the_same_key() -> None:
    prod, staging = cipher(OLD, label="prod"), cipher(OLD, label="staging")
    assert reason(staging, prod.seal(b"x", NOW)) == "label_mismatch"


def test_label_is_authenticated_even_when_the_wire_tag_is_forged() -> None:
    prod, staging = cipher(OLD, label="prod"), cipher(OLD, label="staging")
    packet = bytearray(prod.seal(b"x", NOW))
    packet[1:5] = staging.seal(b"y", NOW)[1:5]  # copy staging's label tag onto prod's packet
    assert reason(staging, bytes(packet)) == "auth_failed"


def test_another_key_is_refused() -> None:
    assert reason(cipher(NEW), cipher(OLD).seal(b"x", NOW)) == "auth_failed"


def test_payload_is_not_readable_on_the_wire() -> None:
    secret = b"node 10.0.0.7 is unhealthy" * 4
    assert secret[:16] not in cipher(OLD).seal(secret, NOW)


def test_tampering_with_any_byte_is_refused() -> None:
    packet = cipher(OLD).seal(b"some gossip payload", NOW)
    assert len(packet) == len(b"some gossip payload") + AESGCM_OVERHEAD
    for i in range(len(packet)):
        tampered = bytearray(packet)
        tampered[i] ^= 0x01
        # a fresh receiver each time, so a refusal is not just "replayed"
        assert reason(cipher(OLD), bytes(tampered)) != "replayed"
    for cut in range(len(packet)):
        assert reason(cipher(OLD), packet[:cut]) in ("too_short", "auth_failed")
    assert reason(cipher(OLD), packet + b"\0") == "auth_failed"


def test_unknown_version_and_mode_mismatch_are_named() -> None:
    sealed = cipher(OLD).seal(b"x", NOW)
    assert reason(cipher(OLD), b"\x07" + sealed[1:]) == "bad_version"
    assert reason(cipher(OLD), b"") == "too_short"
    assert reason(cipher(label="prod"), sealed) == "encryption_mismatch"
    assert reason(cipher(OLD), cipher(label="prod").seal(b"x", NOW)) == "encryption_mismatch"


def test_a_version_2_envelope_is_named_old_so_an_operator_sees_an_unupgraded_peer() -> None:
    sealed = cipher(OLD).seal(b"x", NOW)
    assert reason(cipher(OLD), b"\x02" + sealed[1:]) == "old_envelope"


def test_oversized_envelopes_are_refused_before_decrypting() -> None:
    c = cipher(OLD, max_envelope=1000)
    assert reason(c, b"\x02" + bytes(1000)) == "too_large"
    with pytest.raises(LocalProtocolError):
        c.seal(bytes(1000 - AESGCM_OVERHEAD + 1), NOW)
    assert c.open(c.seal(bytes(1000 - AESGCM_OVERHEAD), NOW), NOW) == bytes(1000 - 46)


def test_payload_budget_subtracts_the_envelope() -> None:
    assert cipher(OLD).payload_budget(1400) == 1400 - 46
    assert cipher().payload_budget(1400) == 1400 - 5
    c = cipher(OLD)
    assert len(c.seal(bytes(c.payload_budget()), NOW)) == 1400


# --- replay window ---------------------------------------------------------------------------


def test_a_replayed_packet_is_refused() -> None:
    sender, receiver = cipher(OLD), cipher(OLD)
    packet = sender.seal(b"suspect node-3", NOW)
    assert receiver.open(packet, NOW + 0.5) == b"suspect node-3"
    assert reason(receiver, packet, NOW + 1) == "replayed"
    assert reason(receiver, packet, NOW + 29) == "replayed"


def test_a_captured_packet_resent_after_the_window_is_stale() -> None:
    sender, receiver = cipher(OLD, window=30.0), cipher(OLD, window=30.0)
    packet = sender.seal(b"x", NOW)
    assert receiver.open(packet, NOW + 29.9) == b"x"
    assert reason(receiver, packet, NOW + 30.1) == "stale"
    assert reason(cipher(OLD), sender.seal(b"y", NOW), NOW + 31) == "stale"


def test_clock_skew_within_the_window_is_accepted_and_beyond_it_refused() -> None:
    sender = cipher(OLD)
    assert cipher(OLD).open(sender.seal(b"x", NOW + 29), NOW) == b"x"  # sender ahead
    assert cipher(OLD).open(sender.seal(b"x", NOW - 29), NOW) == b"x"  # sender behind
    assert reason(cipher(OLD), sender.seal(b"x", NOW + 31)) == "future"


def test_replay_memory_is_bounded_and_never_lets_a_replay_through() -> None:
    sender, receiver = cipher(OLD), cipher(OLD, max_remembered=4)
    packets = [sender.seal(b"p%d" % i, NOW + i * 0.01) for i in range(10)]
    for p in packets:
        receiver.open(p, NOW + 0.2)
    assert len(receiver.replay) == 4
    assert receiver.replay.evicted_when_full == 6
    for p in packets:  # forgotten ones are now under the floor; remembered ones are replays
        assert reason(receiver, p, NOW + 0.2) in ("stale", "replayed")
    assert receiver.open(sender.seal(b"new", NOW + 0.2), NOW + 0.2) == b"new"


def test_memory_is_freed_as_packets_age_out_of_the_window() -> None:
    sender, receiver = cipher(OLD, window=10.0), cipher(OLD, window=10.0)
    for i in range(100):
        receiver.open(sender.seal(b"x", NOW + i), NOW + i)
    assert len(receiver.replay) <= 11
    assert receiver.replay.evicted_when_full == 0


def test_a_receiver_clock_stepping_back_does_not_reopen_the_window() -> None:
    sender, receiver = cipher(OLD, window=10.0), cipher(OLD, window=10.0)
    old_packet = sender.seal(b"x", NOW)
    receiver.open(old_packet, NOW)
    receiver.open(sender.seal(b"y", NOW + 20), NOW + 20)  # forgets old_packet's nonce
    assert reason(receiver, old_packet, NOW + 5) == "stale"  # clock stepped back 15 s


def test_nonces_come_from_os_urandom_by_default() -> None:
    c = GossipCipher(Keyring([OLD]), "prod")
    a, b = c.seal(b"x", NOW), c.seal(b"x", NOW)
    assert a[13:25] != b[13:25]


# --- plaintext mode (--gossip-insecure) ------------------------------------------------------


def test_plaintext_mode_round_trips_and_still_checks_the_label() -> None:
    prod, staging = cipher(label="prod"), cipher(label="staging")
    packet = prod.seal(b"hello", NOW)
    assert len(packet) == 5 + PLAINTEXT_OVERHEAD
    assert b"hello" in packet
    assert prod.open(packet, NOW) == b"hello"
    assert prod.open(packet, NOW + 1000) == b"hello"  # no replay window without a key
    assert reason(staging, packet) == "label_mismatch"
    assert reason(prod, packet[:4]) == "too_short"
    assert prod.open(packet[:5], NOW) == b""


def test_label_length_is_bounded() -> None:
    with pytest.raises(LocalProtocolError):
        cipher(label="x" * 256)


# --- bound to the recipient -------------------------------------------------------------------


def named(name: str, *keys: bytes) -> GossipCipher:
    c = cipher(*keys)
    c.name = name
    return c


def test_a_packet_sealed_for_a_opens_at_a_and_not_when_replayed_to_c() -> None:
    b, a, c = named("b", OLD), named("a", OLD), named("c", OLD)
    packet = b.seal(b"ack 7", NOW, to="a")
    assert reason(c, packet) == "not_for_us"
    assert a.open(packet, NOW) == b"ack 7"


def test_the_recipient_is_authenticated_even_when_its_wire_tag_is_forged() -> None:
    a, c = named("a", OLD), named("c", OLD)
    packet = bytearray(named("b", OLD).seal(b"x", NOW, to="a"))
    packet[14:18] = named("b", OLD).seal(b"y", NOW, to="c")[14:18]
    assert reason(c, bytes(packet)) == "auth_failed"
    assert reason(a, bytes(packet)) == "not_for_us"


def test_an_answer_opens_only_as_the_answer_to_its_request() -> None:
    a, b = named("a", OLD), named("b", OLD)
    request = a.seal(b"push-pull", NOW, to="b")
    opened = b.open_detailed(request, NOW)
    answer = b.seal(b"state", NOW, reply_to=opened.nonce)
    other = a.seal(b"another request", NOW, to="b")
    assert reason(a, answer) == "not_for_us"  # not expecting an answer: not taken as one
    with pytest.raises(RemoteProtocolError) as info:
        a.open(answer, NOW, reply_to=GossipCipher.nonce_of(other))
    assert info.value.reason == "not_for_us"
    assert a.open(answer, NOW, reply_to=GossipCipher.nonce_of(request)) == b"state"


def test_pieces_open_only_in_their_own_message_and_place() -> None:
    a, b = named("a", OLD), named("b", OLD)
    first = a.seal(b"head", NOW, to="b")
    nonce = b.open_detailed(first, NOW).nonce
    piece = a.seal_continuation(b"piece 1", NOW, nonce, 1)
    assert b.open_continuation(piece, nonce, 1) == b"piece 1"
    with pytest.raises(RemoteProtocolError) as wrong_place:
        b.open_continuation(piece, nonce, 2)
    assert wrong_place.value.reason == "auth_failed"
    other = GossipCipher.nonce_of(a.seal(b"other head", NOW, to="b"))
    with pytest.raises(RemoteProtocolError) as wrong_message:
        b.open_continuation(piece, other, 1)
    assert wrong_message.value.reason == "not_for_us"
    assert reason(b, piece) == "not_for_us"  # a piece is never a message of its own


def test_check_header_refuses_from_the_first_bytes_alone() -> None:
    a = named("a", OLD)
    header = named("b", OLD).seal(b"x" * 1000, NOW, to="c")[: a.header_size]
    with pytest.raises(RemoteProtocolError) as info:
        a.check_header(header)
    assert info.value.reason == "not_for_us"
    a.check_header(named("b", OLD).seal(b"x", NOW, to="a")[: a.header_size])


# --- any bytes at all -------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=300), encrypted=st.booleans())
def test_arbitrary_bytes_open_or_raise_remote_protocol_error(data: bytes, encrypted: bool) -> None:
    c = cipher(OLD) if encrypted else cipher()
    try:
        c.open(data, NOW)
    except RemoteProtocolError as e:
        reason_given = e.reason
    else:
        reason_given = "opened"
    assert reason_given in (*DROP_REASONS, "opened")


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=200),
    flips=st.lists(st.tuples(st.integers(0, 300), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_mutated_packets_never_open_to_something_else(
    payload: bytes, flips: list[tuple[int, int]]
) -> None:
    original = cipher(OLD).seal(payload, NOW)
    packet = bytearray(original)
    for pos, xor in flips:
        packet[pos % len(packet)] ^= xor
    if bytes(packet) == original:  # the flips cancelled out
        return
    try:
        opened = cipher(OLD).open(bytes(packet), NOW)
    except RemoteProtocolError:
        return
    pytest.fail(f"a tampered packet opened to {opened!r}")


@pytest.mark.parametrize("now", [float("nan"), -1.0, float("inf")])
def test_a_now_that_is_not_unix_time_is_our_bug_not_the_peers(now: float) -> None:
    with pytest.raises(LocalProtocolError):
        cipher(OLD).seal(b"x", now)
    with pytest.raises(LocalProtocolError):
        cipher(OLD).open(cipher(OLD).seal(b"x", NOW), now)


def test_open_accepts_any_bytes_like_buffer_the_runtime_reads_into() -> None:
    sender = cipher(OLD)
    for wrap in (bytearray, memoryview):
        packet = sender.seal(b"payload", NOW)
        assert cipher(OLD).open(wrap(packet), NOW) == b"payload"
    assert cipher().open(memoryview(cipher().seal(b"p", NOW)), NOW) == b"p"
