"""The link between an fnlb primary and its call-serving workers (`-workers N`).

One Unix stream socket pair per worker carries msgpack frames (4-byte big-endian length,
then a list whose first item names the message):

primary -> worker
  ["view", version, {node: state}]          the primary's `NodeView`, each time it changes
  ["figures", widths, in_flight, caps, homes]  hotset's shared figures, every tick; in_flight
                                            counts every other peer's and every other worker's
  ["backoff", message]                      a back-off message (fnlb.routing.backoff) from a
                                            peer or a sibling worker
worker -> primary
  ["load", [event, ...]]                    its attempts, in order, every tick: [0, fn, node,
                                            t] started; [1, fn, node, status, wait, ttfb, t,
                                            answered_at] finished
  ["fail", node, why]                       a passive failure (the primary's checker confirms)
  ["backoff", message]                      its router's new back-off entries

A second socket pair (SOCK_SEQPACKET) carries client connections whose first request is for
the management API, on a shared port: the bytes read so far plus the socket (SCM_RIGHTS).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Final

import msgpack

MAX_FRAME: Final = 64 << 20
_LEN: Final = struct.Struct(">I")

Event = list[Any]


def frame(message: list[Any]) -> bytes:
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return _LEN.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> list[Any] | None:
    """The next message, None at the end of the stream; ValueError when malformed."""
    try:
        head = await reader.readexactly(_LEN.size)
    except asyncio.IncompleteReadError:
        return None
    (size,) = _LEN.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None
    message = msgpack.unpackb(body, raw=False, strict_map_key=False)
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise ValueError("not a message")
    return message


class RelayLoad:
    """A worker's `AttemptLoad`: books nothing here, keeps each attempt for the primary."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[Event] = []

    def call_started(self, fn: str, node: str, now: float) -> None:
        self.events.append([0, fn, node, now])

    def call_finished(
        self,
        fn: str,
        node: str,
        status: int,
        wait_s: float | None,
        ttfb_s: float | None,
        now: float,
        answered_at: float | None = None,
    ) -> None:
        self.events.append([1, fn, node, status, wait_s, ttfb_s, now, answered_at])

    def take(self) -> list[Event]:
        events, self.events = self.events, []
        return events
