"""The codec: round trips, and ANY bytes either decode or raise RemoteProtocolError(reason)."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlb.errors import RemoteProtocolError
from fnlb.gossip import codec
from fnlb.gossip.messages import (
    Ack,
    Alive,
    DatagramMessage,
    Dead,
    IndirectPing,
    MemberState,
    Nack,
    Ping,
    PushPull,
    PushPullEntry,
    StreamMessage,
    StreamPing,
    Suspect,
    UserBroadcast,
    UserDirect,
)

names = st.text(min_size=1, max_size=codec.MAX_NAME)
ints = st.integers(min_value=0, max_value=codec.MAX_COUNTER)
addrs = st.tuples(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=65535))
metas = st.binary(max_size=codec.MAX_META)

datagram_messages: st.SearchStrategy[DatagramMessage] = st.one_of(
    st.builds(Ping, ints, names),
    st.builds(
        IndirectPing,
        ints,
        names,
        addrs,
        st.booleans(),
        st.none() | st.integers(min_value=0, max_value=codec.MAX_NACK_AFTER_MS),
    ),
    st.builds(Ack, ints),
    st.builds(Nack, ints),
    st.builds(Alive, ints, names, addrs, metas),
    st.builds(Suspect, ints, names, names),
    st.builds(Dead, ints, names, names),
    st.builds(
        UserBroadcast, names, st.binary(max_size=codec.MAX_USER_KEY), st.binary(max_size=200)
    ),
    st.builds(UserDirect, names, st.binary(max_size=codec.MAX_USER_KEY), st.binary(max_size=200)),
)
entries = st.builds(PushPullEntry, names, addrs, ints, st.sampled_from(MemberState), metas)
stream_messages: st.SearchStrategy[StreamMessage] = st.one_of(
    st.builds(PushPull, st.booleans(), st.lists(entries, max_size=5).map(tuple), st.binary()),
    st.builds(StreamPing, ints, names),
    st.builds(Ack, ints),
)


def _packet(msgs: list[DatagramMessage]) -> bytes:
    return codec.encode_packet([codec.encode_message(m) for m in msgs])


@given(st.lists(datagram_messages, min_size=1, max_size=20))
def test_datagrams_round_trip(msgs: list[DatagramMessage]) -> None:
    assert codec.decode_packet(_packet(msgs)) == msgs


@given(stream_messages)
def test_stream_messages_round_trip(msg: StreamMessage) -> None:
    assert codec.decode_stream(codec.encode_stream(msg)) == msg


def _decodes_or_refuses(data: bytes) -> None:
    for decode in (codec.decode_packet, codec.decode_stream):
        reason = None
        try:
            decode(data)
        except RemoteProtocolError as exc:
            reason = exc.reason
        assert reason is None or reason in codec.REASONS


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_remote_protocol_error(data: bytes) -> None:
    _decodes_or_refuses(data)
    _decodes_or_refuses(bytes([codec.VERSION]) + data)


@settings(max_examples=500)
@given(
    st.lists(datagram_messages, min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(min_value=0),
)
def test_mutated_valid_packets_decode_or_raise(
    msgs: list[DatagramMessage], flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(_packet(msgs))
    for pos, value in flips:
        data[pos % len(data)] = value
    _decodes_or_refuses(bytes(data))
    _decodes_or_refuses(bytes(data[: cut % (len(data) + 1)]))


@settings(max_examples=200)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats()
        | st.text()
        | st.binary(),
        lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=30,
    )
)
def test_well_formed_msgpack_of_the_wrong_shape_is_refused(value: object) -> None:
    data = bytes([codec.VERSION]) + msgpack.packb(value, use_bin_type=True)
    _decodes_or_refuses(data)
    _decodes_or_refuses(bytes([codec.VERSION]) + msgpack.packb([value], use_bin_type=True))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x07\x91\x92\x04\x01", "bad_version"),
        (b"\x01\xc1", "malformed"),
        (b"\x01\x91\x92\x04", "malformed"),  # truncated
        (b"\x01\x91\x92\x04\x01\x00", "malformed"),  # trailing bytes
        (b"\x01\x81\x01\x02", "malformed"),  # maps are refused
        (b"\x01\x05", "bad_shape"),
        (b"\x01\x90", "bad_shape"),  # no messages
        (b"\x01\x91\x91\x63", "unknown_type"),
        (b"\x01\x91\x92\x03\xff", "bad_field"),  # negative seq
        (b"\x01\x91\x91\x03", "bad_shape"),  # an Ack without its seq
        (b"\x01" + b"\x00" * 70_000, "too_large"),
    ],
)
def test_each_refusal_has_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        codec.decode_packet(data)
    assert info.value.reason == reason


def test_oversized_fields_are_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="bad_field"):
        codec.decode_packet(_packet([Ack(codec.MAX_COUNTER + 1)]))
    big_meta = Alive(1, "n", ("h", 1), b"m" * (codec.MAX_META + 1))
    with pytest.raises(RemoteProtocolError, match="bad_field"):
        codec.decode_packet(_packet([big_meta]))
    long_name = Ping(1, "x" * (codec.MAX_NAME + 1))
    with pytest.raises(RemoteProtocolError, match="bad_field"):
        codec.decode_packet(_packet([long_name]))


def test_stream_only_messages_are_refused_in_datagrams_and_vice_versa() -> None:
    with pytest.raises(RemoteProtocolError, match="unknown_type"):
        codec.decode_packet(codec.encode_packet([codec.encode_message(StreamPing(1, "a"))]))
    with pytest.raises(RemoteProtocolError, match="unknown_type"):
        codec.decode_stream(codec.encode_stream(Ping(1, "a")))  # type: ignore[arg-type]


def test_unknown_message_types_are_skipped_and_the_rest_of_the_packet_kept() -> None:
    # A newer peer's type (here 42, with fields we cannot read) between two messages we know:
    # an older peer must keep the two, e.g. a Left riding on the newer message.
    future = msgpack.packb([42, "origin", b"k", [1, 2, 3]], use_bin_type=True)
    left = Dead(3, "b", "b")
    data = codec.encode_packet(
        [codec.encode_message(Ping(7, "a")), future, codec.encode_message(left)]
    )
    assert codec.decode_compound(data) == ([Ping(7, "a"), left], 1)
    assert codec.decode_packet(data) == [Ping(7, "a"), left]


def test_only_integer_codes_we_do_not_know_are_skipped() -> None:
    ping = codec.encode_message(Ping(1, "a"))
    for bad, reason in (
        (msgpack.packb(["x", 1]), "unknown_type"),  # not an int code: still strict
        (msgpack.packb([True, 1]), "unknown_type"),
        (msgpack.packb([]), "bad_shape"),
        (msgpack.packb(5), "bad_shape"),
        (codec.encode_message(StreamPing(1, "a")), "unknown_type"),  # known, stream-only
        (msgpack.packb([codec.ACK, -1]), "bad_field"),  # known type, bad field
    ):
        with pytest.raises(RemoteProtocolError) as info:
            codec.decode_compound(codec.encode_packet([ping, bad]))
        assert info.value.reason == reason
    only_unknown = codec.encode_packet([msgpack.packb([99])])
    assert codec.decode_compound(only_unknown) == ([], 1)
    with pytest.raises(RemoteProtocolError, match="unknown_type"):
        codec.decode_packet(only_unknown)


extra_fields = st.lists(
    st.one_of(
        st.integers(min_value=0, max_value=2**32), st.text(max_size=8), st.binary(max_size=8)
    ),
    min_size=1,
    max_size=3,
)


def _with_extra(msg: DatagramMessage | StreamMessage, extra: list[object]) -> bytes:
    """`msg` as a newer peer that appended fields to its type would send it."""
    fields = msgpack.unpackb(codec.encode_message(msg), raw=False)
    if isinstance(msg, PushPull):  # rows gain fields too
        fields[2] = [[*row, *extra] for row in fields[2]]
    return bytes(msgpack.packb([*fields, *extra], use_bin_type=True))


@given(datagram_messages, extra_fields)
def test_fields_a_newer_peer_appends_are_ignored_in_datagrams(
    msg: DatagramMessage, extra: list[object]
) -> None:
    # A rolling upgrade: an older peer keeps reading a message that gained trailing fields.
    if isinstance(msg, IndirectPing) and msg.nack_after_ms is None:
        msg = dataclasses.replace(msg, nack_after_ms=0)  # what is appended follows the 7th
    assert codec.decode_packet(codec.encode_packet([_with_extra(msg, extra)])) == [msg]


@given(stream_messages, extra_fields)
def test_fields_a_newer_peer_appends_are_ignored_in_streams(
    msg: StreamMessage, extra: list[object]
) -> None:
    assert codec.decode_stream(bytes([codec.VERSION]) + _with_extra(msg, extra)) == msg


def test_indirect_ping_carries_an_optional_nack_delay() -> None:
    with_delay = IndirectPing(1, "t", ("h", 1), True, 120)
    assert codec.decode_packet(_packet([with_delay])) == [with_delay]
    old_form = msgpack.packb([codec.INDIRECT_PING, 1, "t", "h", 1, True], use_bin_type=True)
    assert codec.decode_packet(codec.encode_packet([old_form])) == [
        IndirectPing(1, "t", ("h", 1), True, None)
    ]
    for fields, reason in (
        ([1, "t", "h", 1, True, codec.MAX_NACK_AFTER_MS + 1], "bad_field"),
        ([1, "t", "h", 1, True, 0.12], "bad_field"),
        ([1, "t", "h", 1], "bad_shape"),
    ):
        data = msgpack.packb([codec.INDIRECT_PING, *fields], use_bin_type=True)
        with pytest.raises(RemoteProtocolError) as info:
            codec.decode_packet(codec.encode_packet([data]))
        assert info.value.reason == reason
