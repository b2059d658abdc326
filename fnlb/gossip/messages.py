"""The messages members exchange: plain frozen dataclasses, no I/O and no encoding.

Rule 1: no asyncio, socket, time or global random here.

Datagram messages (several travel in one compound packet, see codec.py): Ping, IndirectPing,
Ack, Nack and the broadcasts Alive, Suspect, Dead (a Dead whose accuser is the node itself is
a graceful leave) and UserBroadcast. Stream messages (TCP in the runtime): PushPull (full state,
both ways), StreamPing (memberlist's TCP fallback probe, answered by an Ack).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

Addr = tuple[str, int]
"""A member's address: (host, port). The runtime binds UDP and TCP on the same one."""


class MemberState(IntEnum):
    """What one member believes about another (wire codes are the int values)."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(frozen=True, slots=True)
class Ping:
    """Are you alive? `target` is the name the sender thinks lives at this address."""

    seq: int
    target: str


@dataclass(frozen=True, slots=True)
class IndirectPing:
    """Ping `target` at `target_addr` for me; answer with Ack (or Nack if `nack` and none).

    `nack_after_ms`: when the requester needs the nack by, in milliseconds after the helper
    receives this (the requester's own nack delay, from its profile). A helper nacks at the
    earlier of that and its own delay, so that peers with different profiles still get their
    nacks in time; None (an older peer's 6-field form) means the helper's own delay.
    """

    seq: int
    target: str
    target_addr: Addr
    nack: bool
    nack_after_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """Answer to Ping, forwarded answer to IndirectPing, or answer to StreamPing."""

    seq: int


@dataclass(frozen=True, slots=True)
class Nack:
    """Lifeguard: I asked the target for you but got no answer (so I, at least, am alive)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Alive:
    """`node` at `addr` is alive at `incarnation`, with metadata `meta`."""

    incarnation: int
    node: str
    addr: Addr
    meta: bytes


@dataclass(frozen=True, slots=True)
class Suspect:
    """`accuser` suspects `node` (at `incarnation`) of having failed."""

    incarnation: int
    node: str
    accuser: str


@dataclass(frozen=True, slots=True)
class Dead:
    """`accuser` declares `node` dead at `incarnation`; accuser == node means it left."""

    incarnation: int
    node: str
    accuser: str


@dataclass(frozen=True, slots=True)
class UserBroadcast:
    """An opaque broadcast of the delegate of `origin`; `key` lets newer ones replace older."""

    origin: str
    key: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class UserDirect:
    """A delegate message `origin` sends to every live member itself; never relayed.

    For state that only its origin knows and that a newer copy replaces within a second or
    so (a peer's load figures): N - 1 sends, where a broadcast costs about N x its
    retransmit limit, and a lost copy is simply superseded by the next.
    """

    origin: str
    key: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class StreamPing:
    """The stream fallback probe of `target` (answered with Ack over the same stream)."""

    seq: int
    target: str


@dataclass(frozen=True, slots=True)
class PushPullEntry:
    """One row of a member table in a push-pull exchange."""

    name: str
    addr: Addr
    incarnation: int
    state: MemberState
    meta: bytes


@dataclass(frozen=True, slots=True)
class PushPull:
    """Full state: every known member, plus the delegate's opaque state."""

    join: bool
    entries: tuple[PushPullEntry, ...]
    user_state: bytes


DatagramMessage = (
    Ping | IndirectPing | Ack | Nack | Alive | Suspect | Dead | UserBroadcast | UserDirect
)
StreamMessage = PushPull | StreamPing | Ack
