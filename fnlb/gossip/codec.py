"""Bytes <-> messages: msgpack with a version byte, compound packets, strict decoding.

Rule 1: no asyncio, socket, time or global random here.
Rule 2: ANY byte string either decodes or raises RemoteProtocolError(reason); no other
exception leaves `decode_packet`, `decode_compound` or `decode_stream`. The member counts drops
by `reason`. Two leniencies, both for rolling upgrades: inside a compound datagram, a message
whose type code is an integer this version does not know is skipped and counted, not fatal;
and fields after the ones this version knows (a newer peer's additions) are ignored.

Wire format (plaintext; the runtime may wrap it with the keyring's AEAD):

    datagram = VERSION (1 byte) + msgpack array of messages       (<= profile.packet_budget)
    stream   = VERSION (1 byte) + one msgpack message             (<= MAX_STREAM_BYTES)
    message  = msgpack array [type code, field, ...]

A compound datagram is built from already-encoded messages (broadcasts are encoded once when
queued), so its exact size is known before it is sent. Decoding bounds every length (strings,
binaries, arrays) before allocating, and nesting depth, total items and the memory containers
take as they are built (fnlb.msgpack_bounds); it refuses maps and extension types, and checks
each field's type and range.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from fnlb import msgpack_bounds
from fnlb.errors import RemoteProtocolError
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
    StreamMessage,
    StreamPing,
    Suspect,
    UserBroadcast,
    UserDirect,
)

VERSION = 1
"""Protocol version: the first byte of every datagram and stream message."""

MAX_DATAGRAM_BYTES = 65_507
"""Largest datagram decoded at all (the UDP maximum); larger input is refused unread."""
MAX_STREAM_BYTES = 20 * 1024 * 1024
"""Largest stream message (push-pull state), memberlist's bound."""
MAX_NAME = 128
"""Longest member name, in characters."""
MAX_HOST = 255
"""Longest host in an address, in characters."""
MAX_META = 512
"""Largest member metadata, in bytes."""
MAX_USER_KEY = 128
"""Largest user broadcast key, in bytes."""
MAX_USER_STATE = 16 * 1024 * 1024
"""Largest delegate state in a push-pull, in bytes."""
MAX_NACK_AFTER_MS = 60_000
"""Longest nack delay an IndirectPing may ask for, in milliseconds."""
MAX_MESSAGES = 255
"""Most messages in one compound datagram."""
MAX_ENTRIES = 4096
"""Most members in one push-pull, so the largest cluster (memberlist allows 100,000; decoding
10,000 rows blocked the event loop for 70-190 ms on a loaded 2-core machine, and fnlb
clusters are a few to a few hundred peers)."""
MAX_COUNTER = 2**62
"""Largest incarnation or sequence number accepted: far beyond any honest value, and low
enough that a member refuting a hostile huge incarnation (+1) still encodes as uint64."""

# Type codes on the wire.
PING, INDIRECT_PING, ACK, NACK, SUSPECT, ALIVE, DEAD, USER, PUSH_PULL, STREAM_PING = range(1, 11)
USER_DIRECT = 11

_HEADER = bytes([VERSION])
_COMPOUND_HEADER_MAX = 3  # msgpack array16 header, reserved whatever the count

# Reasons (counter labels) a peer's bytes are dropped under.
EMPTY = "empty"
TOO_LARGE = "too_large"
BAD_VERSION = "bad_version"
MALFORMED = "malformed"
BAD_SHAPE = "bad_shape"
UNKNOWN_TYPE = "unknown_type"
BAD_FIELD = "bad_field"
TOO_DEEP = "too_deep"
TOO_MANY_ITEMS = "too_many_items"
TOO_INFLATED = "too_inflated"
REASONS = (
    EMPTY,
    TOO_LARGE,
    BAD_VERSION,
    MALFORMED,
    BAD_SHAPE,
    UNKNOWN_TYPE,
    BAD_FIELD,
    TOO_DEEP,
    TOO_MANY_ITEMS,
    TOO_INFLATED,
)


# --- encoding -------------------------------------------------------------------------------


def _fields(msg: DatagramMessage | StreamMessage) -> list[Any]:
    match msg:
        case Ping(seq, target):
            return [PING, seq, target]
        case IndirectPing(seq, target, (host, port), nack, None):
            return [INDIRECT_PING, seq, target, host, port, nack]
        case IndirectPing(seq, target, (host, port), nack, nack_after_ms):
            return [INDIRECT_PING, seq, target, host, port, nack, nack_after_ms]
        case Ack(seq):
            return [ACK, seq]
        case Nack(seq):
            return [NACK, seq]
        case Suspect(inc, node, accuser):
            return [SUSPECT, inc, node, accuser]
        case Alive(inc, node, (host, port), meta):
            return [ALIVE, inc, node, host, port, meta]
        case Dead(inc, node, accuser):
            return [DEAD, inc, node, accuser]
        case UserBroadcast(origin, key, payload):
            return [USER, origin, key, payload]
        case UserDirect(origin, key, payload):
            return [USER_DIRECT, origin, key, payload]
        case StreamPing(seq, target):
            return [STREAM_PING, seq, target]
        case PushPull(join, entries, user_state):
            rows = [
                [e.name, e.addr[0], e.addr[1], e.incarnation, int(e.state), e.meta] for e in entries
            ]
            return [PUSH_PULL, join, rows, user_state]
    raise TypeError(f"not a gossip message: {msg!r}")  # pragma: no cover


def encode_message(msg: DatagramMessage | StreamMessage) -> bytes:
    """One message as msgpack (no version byte): the unit packets are assembled from."""
    out: bytes = msgpack.packb(_fields(msg), use_bin_type=True)
    return out


def packet_overhead() -> int:
    """Bytes a compound datagram adds around its messages (version + array header)."""
    return len(_HEADER) + _COMPOUND_HEADER_MAX


def encode_packet(encoded: Sequence[bytes]) -> bytes:
    """A compound datagram from already-encoded messages (see `encode_message`)."""
    n = len(encoded)
    head = bytes([0x90 | n]) if n < 16 else bytes([0xDC, n >> 8, n & 0xFF])
    return _HEADER + head + b"".join(encoded)


def encode_stream(msg: StreamMessage) -> bytes:
    """A stream message (push-pull, stream ping or its ack) with its version byte."""
    return _HEADER + encode_message(msg)


# --- decoding -------------------------------------------------------------------------------


_DATAGRAM_LIMITS = msgpack_bounds.Limits(
    max_bytes=MAX_DATAGRAM_BYTES,
    max_depth=3,  # packet, message, and one level for a newer peer's appended field
    max_items=8 * 1024,
    max_array=MAX_MESSAGES,
    max_str=MAX_DATAGRAM_BYTES,
    max_bin=MAX_DATAGRAM_BYTES,
    malformed=MALFORMED,
)
_STREAM_LIMITS = msgpack_bounds.Limits(
    max_bytes=MAX_STREAM_BYTES,
    max_depth=4,  # message, rows, row, and one level for a newer peer's appended field
    max_items=8 * MAX_ENTRIES + 64,
    max_array=MAX_ENTRIES,
    max_str=64 * 1024,
    max_bin=MAX_USER_STATE,
    slack=1 << 20,  # the rows of an honest 4,096-member push-pull
    malformed=MALFORMED,
)


def _unpack(body: bytes | memoryview, limits: msgpack_bounds.Limits) -> Any:
    """msgpack within the path's bounds (fnlb.msgpack_bounds: depth, items, memory)."""
    return msgpack_bounds.unpack(body, limits)


def _int(v: Any) -> int:
    if type(v) is not int or not 0 <= v <= MAX_COUNTER:
        raise RemoteProtocolError(BAD_FIELD, "expected a non-negative integer")
    return v


def _name(v: Any) -> str:
    if type(v) is not str or not 0 < len(v) <= MAX_NAME:
        raise RemoteProtocolError(BAD_FIELD, "expected a member name")
    return v


def _addr(host: Any, port: Any) -> Addr:
    if type(host) is not str or not 0 < len(host) <= MAX_HOST:
        raise RemoteProtocolError(BAD_FIELD, "expected a host")
    if type(port) is not int or not 0 < port <= 65535:
        raise RemoteProtocolError(BAD_FIELD, "expected a port")
    return (host, port)


def _bin(v: Any, cap: int) -> bytes:
    if type(v) is not bytes or len(v) > cap:
        raise RemoteProtocolError(BAD_FIELD, "expected bytes within the size cap")
    return v


def _bool(v: Any) -> bool:
    if type(v) is not bool:
        raise RemoteProtocolError(BAD_FIELD, "expected a boolean")
    return v


def _nack_after_ms(v: Any) -> int:
    if type(v) is not int or not 0 <= v <= MAX_NACK_AFTER_MS:
        raise RemoteProtocolError(BAD_FIELD, "expected a nack delay in milliseconds")
    return v


def _arity(m: list[Any], n: int) -> None:
    """At least the `n - 1` fields this version reads; more are a newer peer's additions.

    A newer version appends optional fields (as the IndirectPing nack delay was appended);
    ignoring what follows the known fields lets older peers keep reading its messages during
    a rolling upgrade. The extra fields were still bounded and parsed by `_unpack`.
    """
    if len(m) < n:
        raise RemoteProtocolError(BAD_SHAPE, f"type {m[0]} needs {n - 1} fields")


def _datagram_message(m: Any) -> DatagramMessage:
    if type(m) is not list or not m:
        raise RemoteProtocolError(BAD_SHAPE, "message is not a non-empty array")
    code = m[0]
    if code == PING and type(code) is int:
        _arity(m, 3)
        return Ping(_int(m[1]), _name(m[2]))
    if code == ACK and type(code) is int:
        _arity(m, 2)
        return Ack(_int(m[1]))
    if code == ALIVE and type(code) is int:
        _arity(m, 6)
        return Alive(_int(m[1]), _name(m[2]), _addr(m[3], m[4]), _bin(m[5], MAX_META))
    if code == SUSPECT and type(code) is int:
        _arity(m, 4)
        return Suspect(_int(m[1]), _name(m[2]), _name(m[3]))
    if code == DEAD and type(code) is int:
        _arity(m, 4)
        return Dead(_int(m[1]), _name(m[2]), _name(m[3]))
    if code == INDIRECT_PING and type(code) is int:
        _arity(m, 6)  # the nack delay (7th) is optional: older peers do not send it
        nack_after = _nack_after_ms(m[6]) if len(m) >= 7 else None
        return IndirectPing(_int(m[1]), _name(m[2]), _addr(m[3], m[4]), _bool(m[5]), nack_after)
    if code == NACK and type(code) is int:
        _arity(m, 2)
        return Nack(_int(m[1]))
    if code == USER and type(code) is int:
        _arity(m, 4)
        return UserBroadcast(_name(m[1]), _bin(m[2], MAX_USER_KEY), _bin(m[3], MAX_DATAGRAM_BYTES))
    if code == USER_DIRECT and type(code) is int:
        _arity(m, 4)
        return UserDirect(_name(m[1]), _bin(m[2], MAX_USER_KEY), _bin(m[3], MAX_DATAGRAM_BYTES))
    raise RemoteProtocolError(UNKNOWN_TYPE, f"{code!r} in a datagram")


_KNOWN_CODES = frozenset(range(PING, USER_DIRECT + 1))
"""Every type code this version knows, datagram or stream."""


def _is_unknown_type(m: Any) -> bool:
    """A well-formed message of a type this version does not know: skipped, not fatal.

    A newer peer may piggyback a message type we have never heard of next to ones we know
    (a rolling upgrade); dropping its whole datagram would also drop the Alive or Left riding
    with it. Only an int code outside every known code qualifies: a stream-only code in a
    datagram, or a known code with bad fields, still refuses the packet.
    """
    if type(m) is not list or not m or type(m[0]) is not int:
        return False
    return m[0] not in _KNOWN_CODES


def _header_ok(data: bytes, cap: int) -> None:
    if not data:
        raise RemoteProtocolError(EMPTY)
    if len(data) > cap:
        raise RemoteProtocolError(TOO_LARGE, f"{len(data)} bytes")
    if data[0] != VERSION:
        raise RemoteProtocolError(BAD_VERSION, f"{data[0]}")


def decode_compound(data: bytes) -> tuple[list[DatagramMessage], int]:
    """The known messages of a compound datagram and how many of unknown type were skipped.

    The packet as a whole is still strict: bad framing, or any message of a known type that
    fails its checks, raises RemoteProtocolError(reason) for the whole datagram. Messages whose
    type code is an integer we do not know are skipped (the caller counts them under
    `unknown_type`), so that an older peer keeps what it understands of a newer peer's packet.
    """
    _header_ok(data, MAX_DATAGRAM_BYTES)
    body = _unpack(memoryview(data)[1:], _DATAGRAM_LIMITS)
    if type(body) is not list or not 0 < len(body) <= MAX_MESSAGES:
        raise RemoteProtocolError(BAD_SHAPE, "datagram is not an array of 1..255 messages")
    known = [_datagram_message(m) for m in body if not _is_unknown_type(m)]
    return known, len(body) - len(known)


def decode_packet(data: bytes) -> list[DatagramMessage]:
    """The known messages of a compound datagram, or RemoteProtocolError(reason).

    Like `decode_compound` without the count; a packet with no known message at all raises
    RemoteProtocolError(unknown_type), so the result is never empty.
    """
    known, skipped = decode_compound(data)
    if not known:
        raise RemoteProtocolError(UNKNOWN_TYPE, f"{skipped} message(s) of unknown type")
    return known


def _entry(row: Any) -> PushPullEntry:
    if type(row) is not list or len(row) < 6:
        raise RemoteProtocolError(BAD_SHAPE, "push-pull row has fewer than 6 fields")
    state = row[4]
    if type(state) is not int or not 0 <= state <= 3:
        raise RemoteProtocolError(BAD_FIELD, "member state")
    return PushPullEntry(
        _name(row[0]),
        _addr(row[1], row[2]),
        _int(row[3]),
        MemberState(state),
        _bin(row[5], MAX_META),
    )


def decode_stream(data: bytes) -> StreamMessage:
    """One stream message (PushPull, StreamPing or Ack), or RemoteProtocolError(reason)."""
    _header_ok(data, MAX_STREAM_BYTES)
    m = _unpack(memoryview(data)[1:], _STREAM_LIMITS)
    if type(m) is not list or not m:
        raise RemoteProtocolError(BAD_SHAPE, "stream message is not a non-empty array")
    code = m[0]
    if code == PUSH_PULL and type(code) is int:
        _arity(m, 4)
        rows = m[2]
        if type(rows) is not list or len(rows) > MAX_ENTRIES:
            raise RemoteProtocolError(BAD_FIELD, "push-pull rows")
        entries = tuple(_entry(r) for r in rows)
        return PushPull(_bool(m[1]), entries, _bin(m[3], MAX_USER_STATE))
    if code == STREAM_PING and type(code) is int:
        _arity(m, 3)
        return StreamPing(_int(m[1]), _name(m[2]))
    if code == ACK and type(code) is int:
        _arity(m, 2)
        return Ack(_int(m[1]))
    raise RemoteProtocolError(UNKNOWN_TYPE, f"{code!r} in a stream")
