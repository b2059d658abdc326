"""The wire under the gossip runtime: sealed UDP datagrams and TCP stream messages in pieces.

Why a separate module: the runtime (runtime.py) owns the member's clock, timer and events;
this one owns bytes on sockets and their limits, so both stay short.

Every datagram is one `GossipCipher` envelope (encrypted, or in plaintext mode with
--gossip-insecure). A stream carries exactly one request message and one reply message,
each sent as one or more *pieces*; a piece is a 4-byte big-endian length and an envelope:

    +----------+---------------------------------------------------------------+
    | len (4B) | envelope: sealed [total length (4B), first bytes of message]  |  first piece
    +----------+---------------------------------------------------------------+
    | len (4B) | envelope: sealed continuation 1 (bound to the first's nonce)  |  while bytes
    +----------+---------------------------------------------------------------+  remain

Why pieces: a reader must not hold more than it has authenticated. With one envelope per
message (before), a stranger declaring 20 MiB made the reader buffer 20 MiB before the
label or the cipher saw a byte. Now the reader takes the 4-byte length (at most one piece,
`PIECE` bytes of plaintext), then the envelope header (`GossipCipher.check_header`: version,
cluster, recipient) and refuses there; only then the rest of the piece, which must
authenticate before the declared total is believed. Each continuation is checked in turn,
bound to its message and place (crypto.py, kind 3). So an attacker without the key makes a
reader hold at most one piece per stream; a key holder is a member and may send its full
state (at most `cipher.max_envelope`).

In plaintext mode nothing authenticates, so the pieces bound memory per read but not per
message; plaintext gossip is for trusted networks only (docs/gossip.md, "Security").

Every failure raises `FrameError(reason)` or `RemoteProtocolError(reason)`; the runtime
counts the reason.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from fnlb.gossip.crypto import GossipCipher

_LEN = struct.Struct(">I")
#: concurrent streams each way (memberlist's maxPushPullRequests)
MAX_STREAMS = 128
#: plaintext bytes in one piece: what a reader holds before authenticating it
PIECE = 16 * 1024


class FrameError(Exception):
    """A stream frame we refuse; `reason` is the drop counter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def frame(envelope: bytes) -> bytes:
    """One length-prefixed frame."""
    return _LEN.pack(len(envelope)) + envelope


def message_frames(
    cipher: GossipCipher, payload: bytes, now: float, *, to: str = "", reply_to: bytes = b""
) -> tuple[list[bytes], bytes]:
    """The framed pieces of one stream message, and the nonce of its first (answers bind to it).

    `to` and `reply_to` bind the message as `GossipCipher.seal` does.
    """
    cut = PIECE - _LEN.size
    first = cipher.seal(_LEN.pack(len(payload)) + payload[:cut], now, to=to, reply_to=reply_to)
    nonce = cipher.nonce_of(first)
    out = [frame(first)]
    index = 1
    while cut < len(payload):
        piece = payload[cut : cut + PIECE]
        out.append(frame(cipher.seal_continuation(piece, now, nonce, index)))
        cut += PIECE
        index += 1
    return out, nonce


async def _read_envelope(
    reader: asyncio.StreamReader,
    cipher: GossipCipher,
    *,
    reply_to: bytes = b"",
    first: bytes = b"",
    length: bytes = b"",
) -> bytes:
    """One piece's envelope, refused from its length and header before the rest is read.

    `length` is the piece's 4 length bytes when the caller has read them already."""
    (size,) = _LEN.unpack(length or await reader.readexactly(_LEN.size))
    if size > PIECE + cipher.overhead:
        raise FrameError("frame_too_large")
    head = await reader.readexactly(min(size, cipher.header_size))
    cipher.check_header(head, reply_to=reply_to, first=first)
    return head + await reader.readexactly(size - len(head))


async def read_message(
    reader: asyncio.StreamReader,
    cipher: GossipCipher,
    now: Callable[[], float],
    max_size: int,
    *,
    reply_to: bytes = b"",
    first_byte_timeout: float | None = None,
    on_authenticated: Callable[[], None] | None = None,
) -> tuple[bytes, bytes]:
    """Read one stream message: its payload and the nonce its answer must be bound to.

    `reply_to` is the nonce of the request this message answers (the requester's side).
    `first_byte_timeout`: the first piece's length must arrive within it, else
    FrameError("first_byte_timeout").
    `on_authenticated` is called once the first piece opened (the stream is then a peer's).
    Raises FrameError or RemoteProtocolError with the reason to count.
    """
    try:
        if first_byte_timeout is None:
            head = await reader.readexactly(_LEN.size)
        else:
            try:
                async with asyncio.timeout(first_byte_timeout):
                    head = await reader.readexactly(_LEN.size)
            except TimeoutError:
                raise FrameError("first_byte_timeout") from None
        envelope = await _read_envelope(reader, cipher, reply_to=reply_to, length=head)
        opened = cipher.open_detailed(envelope, now(), reply_to=reply_to)
        del envelope
        if on_authenticated is not None:
            on_authenticated()
        body = opened.payload
        if len(body) < _LEN.size:
            raise FrameError("bad_frame")
        (total,) = _LEN.unpack(body[: _LEN.size])
        if total > max_size:
            raise FrameError("frame_too_large")
        parts = [body[_LEN.size :]]
        have = len(parts[0])
        index = 1
        while have < total:
            piece = cipher.open_continuation(
                await _read_envelope(reader, cipher, first=opened.nonce), opened.nonce, index
            )
            if not piece:
                raise FrameError("bad_frame")
            parts.append(piece)
            have += len(piece)
            index += 1
        if have != total:
            raise FrameError("bad_frame")
        return b"".join(parts), opened.nonce
    except asyncio.IncompleteReadError:
        raise FrameError("stream_closed") from None
