"""The link between an fnlb primary and its call-serving workers (`-workers N`).

One Unix stream socket pair per worker carries msgpack frames (4-byte big-endian length,
then a list whose first item names the message):

primary -> worker
  ["view", version, {node: state}]          the primary's `NodeView`, each time it changes
  ["figures", widths, in_flight, caps, homes]  hotset's shared figures, every tick; in_flight
                                            counts every other peer's and every other worker's
  ["backoff", message]                      the primary's back-off entries new since the
                                            last tick (its own, its peers', and those its
                                            router made from the workers' attempts)
worker -> primary
  ["attempts", [event, ...]]                its attempts, in order, every tick: [0, key, node,
                                            t] started (Peer.attempt_started); [1, key, node,
                                            path, status, ended, wait_s, retry_after_s,
                                            answer_s, answered_at] finished: the `Attempt`
                                            record (fnlb.routing.attempt) for
                                            Peer.attempt_finished
  ["fail", node, why, now_ms]               a node it could not reach (Peer.connect_failed)
  ["calls", snapshot, spans]                its call figures for /metrics, cumulative, once a
                                            second (fnlb.observe.calls.CallObserver.snapshot),
                                            and its -zipkin exporter's counts (or None)

A second socket pair (SOCK_SEQPACKET) carries client connections whose first request is for
the management API, on a shared port: the bytes read so far plus the socket (SCM_RIGHTS).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Final

import msgpack

from fnlb.routing.attempt import Attempt

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


class AttemptRelay:
    """A worker's attempts, in order, kept for its primary's Peer (sent every tick)."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[Event] = []

    def started(self, key: str, node: str, now: float) -> None:
        self.events.append([0, key, node, now])

    def finished(self, a: Attempt) -> None:
        self.events.append(
            [
                1,
                a.key,
                a.node,
                a.path,
                a.status,
                a.ended,
                a.wait_s,
                a.retry_after_s,
                a.answer_s,
                a.answered_at,
            ]
        )

    def take(self) -> list[Event]:
        events, self.events = self.events, []
        return events


def attempt_of(event: Event) -> Attempt:
    """The `Attempt` a finished event carries (`AttemptRelay.finished`'s inverse)."""
    return Attempt(*event[1:10])
