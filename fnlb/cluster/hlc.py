"""A hybrid logical clock: timestamps that follow wall time yet never run backwards.

Rule 1: no asyncio, socket, time or global random here. Rule 2: every call carries `now_ms`
(milliseconds of wall time, from the caller's clock); the new timestamp is returned.

Theory of operation (Kulkarni et al., "Logical Physical Clocks", 2014): a timestamp is
(wall_ms, logical, node). `wall_ms` is the largest wall time this clock has seen, its own
or a peer's; `logical` counts events within one `wall_ms`; `node` is the id of the peer that
issued the stamp, so two stamps from different peers are never equal and every peer orders
all stamps alike (plain tuple comparison). If event e happened before f (same peer, or a
message carried e's stamp to f's peer), stamp(e) < stamp(f); and `wall_ms` stays within the
drift bound of real time, so "later" also means "later on the wall" for humans.

Drift rule: a remote stamp whose `wall_ms` is more than `max_drift_ms` ahead of our own wall
clock is *rejected* (`update` raises `RemoteProtocolError("hlc_drift")`,
`acceptable` says False), never clamped. Why not clamp: the stamp belongs to a CRDT entry
that other peers hold unchanged; rewriting it here would make peers disagree on the entry
and so on the winner. Why not accept: our clock would jump to the peer's future, every stamp
we then issue would carry it, and one peer with a wrong clock would drag the cluster's
clocks (and the "later wins" rule) away from real time. Rejection only delays the entry:
once our wall clock is within `max_drift_ms` of it, the next anti-entropy exchange delivers
it again and it is accepted. Consequently our own clock is never more than `max_drift_ms`
ahead of our wall time.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from fnlb.errors import RemoteProtocolError

__all__ = ["DEFAULT_MAX_DRIFT_MS", "HybridClock", "Timestamp"]

DEFAULT_MAX_DRIFT_MS = 60_000
"""How far (ms) a peer's clock may run ahead of ours before its stamps are refused."""

_MAX_U63 = (1 << 63) - 1
_MAX_NODE_ID = 255


class Timestamp(NamedTuple):
    """One HLC stamp; tuples compare field by field, which is the clock's total order."""

    wall_ms: int
    logical: int
    node: str

    def to_wire(self) -> tuple[int, int, str]:
        """The stamp as msgpack-friendly data: (wall_ms, logical, node)."""
        return (self.wall_ms, self.logical, self.node)

    @classmethod
    def from_wire(cls, data: Any) -> Timestamp:
        """Read a stamp a peer sent (list or tuple); garbage raises RemoteProtocolError."""
        if not isinstance(data, list | tuple) or len(data) != 3:
            raise RemoteProtocolError("bad_hlc", "a stamp is [wall_ms, logical, node]")
        wall, logical, node = data
        return cls.checked(wall, logical, node)

    @classmethod
    def checked(cls, wall: Any, logical: Any, node: Any) -> Timestamp:
        """A stamp from untrusted parts: non-negative int64s and a short non-empty id."""
        for value in (wall, logical):
            if type(value) is not int or not 0 <= value <= _MAX_U63:
                raise RemoteProtocolError("bad_hlc", f"not a non-negative int64: {value!r}")
        if not isinstance(node, str) or not 0 < len(node) <= _MAX_NODE_ID:
            raise RemoteProtocolError("bad_hlc", f"bad node id {node!r}")
        return cls(wall, logical, node)


class HybridClock:
    """The hybrid logical clock of one peer, identified by `node_id`.

    Node ids must be unique in the cluster; a restarted peer keeps its id and should be
    given its last persisted stamp (`last`) so that its clock cannot step back even if the
    machine's wall clock did.
    """

    def __init__(
        self,
        node_id: str,
        *,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
        last: Timestamp | None = None,
    ) -> None:
        if not 0 < len(node_id) <= _MAX_NODE_ID:
            raise ValueError("a node id is 1 to 255 characters")
        if max_drift_ms < 0:
            raise ValueError("max_drift_ms cannot be negative")
        self.node_id = node_id
        self.max_drift_ms = max_drift_ms
        self._wall = last.wall_ms if last is not None else 0
        self._logical = last.logical if last is not None else 0

    @property
    def last(self) -> Timestamp:
        """The latest stamp issued or seen (with our node id): persist it across restarts."""
        return Timestamp(self._wall, self._logical, self.node_id)

    def tick(self, now_ms: int) -> Timestamp:
        """A fresh stamp for a local event (add, remove, send), later than all seen so far."""
        if now_ms > self._wall:
            self._wall, self._logical = now_ms, 0
        else:
            self._logical += 1
        return Timestamp(self._wall, self._logical, self.node_id)

    def witness(self, stamp: Timestamp) -> None:
        """Move the clock up to `stamp` without the drift check: only for our own saved state.

        A peer restored from its snapshot calls this with the latest stamp in it, so that the
        clock is past every stamp it issued before the restart, whatever its wall clock says.
        """
        if (stamp.wall_ms, stamp.logical) > (self._wall, self._logical):
            self._wall, self._logical = stamp.wall_ms, stamp.logical

    def acceptable(self, remote: Timestamp, now_ms: int) -> bool:
        """Whether `remote` is within the drift bound of our wall clock (see the drift rule)."""
        return remote.wall_ms - now_ms <= self.max_drift_ms

    def update(self, remote: Timestamp, now_ms: int) -> Timestamp:
        """Take in a stamp received from a peer; returns our new stamp, later than both.

        Raises RemoteProtocolError("hlc_drift") and leaves the clock alone when `remote`
        is more than `max_drift_ms` ahead of `now_ms`.
        """
        if not self.acceptable(remote, now_ms):
            raise RemoteProtocolError(
                "hlc_drift",
                f"stamp from {remote.node} is {remote.wall_ms - now_ms} ms ahead of ours",
            )
        wall = max(self._wall, remote.wall_ms, now_ms)
        if wall == self._wall and wall == remote.wall_ms:
            logical = max(self._logical, remote.logical) + 1
        elif wall == self._wall:
            logical = self._logical + 1
        elif wall == remote.wall_ms:
            logical = remote.logical + 1
        else:
            logical = 0
        self._wall, self._logical = wall, logical
        return Timestamp(wall, logical, self.node_id)
