"""The wire under the gossip runtime: sealed UDP datagrams and length-prefixed TCP frames.

Why a separate module: the runtime (runtime.py) owns the member's clock, timer and events;
this one owns bytes on sockets and their limits, so both stay short.

Every datagram and every stream message is one `GossipCipher` envelope (encrypted, or in
plaintext mode with --gossip-insecure). A stream carries exactly one request frame and one
reply frame, each a 4-byte big-endian length followed by the envelope:

    +----------+-----------------------------+
    | len (4B) | envelope (len bytes)         |
    +----------+-----------------------------+

Bounds (memberlist's): an envelope is at most `cipher.max_envelope` (20 MiB of state plus
framing); at most `MAX_STREAMS` streams (served plus opened) run at once; every stream is
done within the profile's `stream_timeout`. Whatever breaks a bound, fails to open, or is
cut short is dropped and counted by reason, never raised.
"""

from __future__ import annotations

import asyncio
import struct

_LEN = struct.Struct(">I")
#: concurrent streams each way (memberlist's maxPushPullRequests)
MAX_STREAMS = 128


class FrameError(Exception):
    """A stream frame we refuse; `reason` is the drop counter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def frame(envelope: bytes) -> bytes:
    """One length-prefixed frame."""
    return _LEN.pack(len(envelope)) + envelope


async def read_frame(reader: asyncio.StreamReader, max_size: int) -> bytes:
    """Read one frame; FrameError('frame_too_large' | 'stream_closed') if it is not one."""
    try:
        header = await reader.readexactly(_LEN.size)
        (size,) = _LEN.unpack(header)
        if size > max_size:
            raise FrameError("frame_too_large")
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise FrameError("stream_closed") from None
