"""What gossip carries for the layer above it, without knowing what it is.

Gossip knows nothing of Fn. fnlb's one implementation of `GossipDelegate` is the `Peer`
(fnlb.peer.core), used alike by `fnlb serve`, the simulators and the tests; it hands the
member opaque, versioned bytes (fnlb.payloads): broadcasts to piggyback (each with a key, so
a newer broadcast under the same key replaces an older one still queued), its local state
for push-pull anti-entropy, and a merge of the state a peer sent. It must treat everything it
receives as possibly stale or repeated (merges must be idempotent and order-insensitive, e.g.
a CRDT), because gossip delivers at least once, in no particular order.

`RecordingDelegate` and `NullDelegate` carry no fnlb state: gossip's own tests and benchmarks
use them to study membership and dissemination alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class GossipDelegate(Protocol):
    """The cluster layer as gossip sees it. Methods are called synchronously by the member."""

    def take_broadcasts(self) -> list[tuple[bytes, bytes]]:
        """New (key, payload) broadcasts to disseminate; called each gossip round and drained.

        A payload must fit in one packet (about profile.packet_budget - 100 bytes); the key
        (<= 128 bytes) names what the payload is the latest version of.
        """
        ...

    def take_direct(self) -> list[tuple[bytes, bytes]]:
        """New (key, payload) messages to send once to every live member, never relayed.

        For figures only this member knows and re-sends within a second or so anyway: they
        cost N - 1 datagrams instead of a broadcast's ~N x retransmit limit, and a lost one
        is replaced by the next. They arrive through `notify_broadcast`. Same size limits.
        """
        ...

    def notify_broadcast(self, origin: str, key: bytes, payload: bytes) -> bool:
        """A peer's broadcast or direct message arrived here (it may still be stale).

        True when it was news here (it changed what we hold): only then does the member
        relay a broadcast. A stale copy (older than what we hold) is not relayed, so a relay
        that heard the newer of two broadcasts first never forwards the older in its place.
        """
        ...

    def local_state(self, join: bool) -> bytes:
        """This member's full state for a push-pull exchange (`join`: the peer is joining)."""
        ...

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        """Merge a peer's full state received in a push-pull exchange."""
        ...


class NullDelegate:
    """A delegate that carries nothing: pure membership."""

    def take_broadcasts(self) -> list[tuple[bytes, bytes]]:
        return []

    def take_direct(self) -> list[tuple[bytes, bytes]]:
        return []

    def notify_broadcast(self, origin: str, key: bytes, payload: bytes) -> bool:
        return True  # opaque to us: relay it, as SWIM does

    def local_state(self, join: bool) -> bytes:
        return b""

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        return None


@dataclass
class RecordingDelegate:
    """A test delegate: broadcasts what it is told to, records what it receives.

    Its state for push-pull is a set of byte strings (merged by union), so tests can check
    that anti-entropy delivers state that no broadcast carried.
    """

    pending: list[tuple[bytes, bytes]] = field(default_factory=list)
    pending_direct: list[tuple[bytes, bytes]] = field(default_factory=list)
    received: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    state: set[bytes] = field(default_factory=set)
    merges: int = 0

    def broadcast(self, key: bytes, payload: bytes) -> None:
        """Queue a broadcast for the member to pick up on its next gossip round."""
        self.pending.append((key, payload))

    def send_direct(self, key: bytes, payload: bytes) -> None:
        """Queue a message for every live member, sent on the member's next gossip round."""
        self.pending_direct.append((key, payload))

    def take_broadcasts(self) -> list[tuple[bytes, bytes]]:
        out, self.pending = self.pending, []
        return out

    def take_direct(self) -> list[tuple[bytes, bytes]]:
        out, self.pending_direct = self.pending_direct, []
        return out

    def notify_broadcast(self, origin: str, key: bytes, payload: bytes) -> bool:
        self.received.append((origin, key, payload))
        return True

    def local_state(self, join: bool) -> bytes:
        return b"\n".join(sorted(self.state))

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        self.merges += 1
        if data:
            self.state.update(data.split(b"\n"))
