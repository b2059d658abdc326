"""The cluster-wide set of Fn nodes: a last-writer-wins element set with HLC stamps.

Rule 1: no asyncio, socket, time or global random here. Rule 2: every call that needs the
time carries `now_ms`; what must be broadcast or what changed is returned.

Theory of operation (docs/nodeset.md has the full argument):

- Every address ever added or removed has one entry: (address, HLC stamp, present?).
  `add` and `remove` write an entry with a fresh stamp from this peer's clock and return
  it as the delta to broadcast; a removal leaves a tombstone (present=False).
- Conflict rule: for one address the entry with the larger stamp wins; stamps carry the
  issuing peer's id, so two peers never issue equal stamps. A delete issued after its peer
  saw the add wins; an add issued after the delete was seen brings the node back; truly
  concurrent add and delete are decided by the stamps, identically on every peer. (Should
  two entries ever carry the same stamp, the removal wins: the order stays total.)
- Merging is taking, per address, the larger entry: commutative, associative and
  idempotent, so any delivery order, duplicate or replay converges.
- Merged stamps advance our clock, so whatever we issue later outranks all we have seen.
- Drift: entries stamped more than the clock's `max_drift_ms` in our future are refused
  (returned, not applied) and come again with the next anti-entropy exchange.
- Tombstones stamped more than `horizon_ms` ago are collected, and the replica's
  `gc_floor_ms` rises past them. Three rules keep a collected tombstone from resurrecting
  its node (an add it had beaten, still held by a peer that missed the delete):
    * ghost guard: an incoming entry for an address we hold no entry for, stamped below
      our `gc_floor_ms`, is refused;
    * full-state cleanup: in `merge_full` (push/pull), we drop our own entries that the
      peer lacks and that are stamped below the peer's `gc_floor_ms`, then adopt the
      larger floor;
    * stale peer: a replica with no full-state exchange for `stale_after_ms` may hold such
      ghosts (it comes back from a long partition, or restarts from an old snapshot): its
      merges set `needs_full_sync`, and its runtime must push/pull before trusting its view.
  Safety assumes no peer or group of peers is cut off from the rest for longer than
  `horizon_ms - max_drift_ms`; what happens beyond that is in docs/nodeset.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fnlb.cluster.hlc import HybridClock, Timestamp
from fnlb.errors import RemoteProtocolError

__all__ = [
    "DEFAULT_HORIZON_MS",
    "SNAPSHOT_VERSION",
    "Entry",
    "MergeResult",
    "NodeSet",
    "merge_states",
    "state_digest",
]

DEFAULT_HORIZON_MS = 24 * 3600 * 1000
"""Tombstones older than this (ms, by their stamp) are collected: one day."""

SNAPSHOT_VERSION = 1
_MAX_ADDR = 255


class Entry(NamedTuple):
    """The latest word on one address: added (present) or removed, and when."""

    addr: str
    stamp: Timestamp
    present: bool

    def rank(self) -> tuple[int, int, str, bool]:
        """The order in which entries for one address supersede each other (larger wins).

        The stamp decides; on an (impossible in practice) equal stamp a removal wins.
        """
        return (self.stamp.wall_ms, self.stamp.logical, self.stamp.node, not self.present)

    def to_wire(self) -> tuple[str, int, int, str, bool]:
        """msgpack-friendly form: (addr, wall_ms, logical, origin node id, present)."""
        return (self.addr, self.stamp.wall_ms, self.stamp.logical, self.stamp.node, self.present)

    @classmethod
    def from_wire(cls, data: Any) -> Entry:
        """Read an entry a peer sent (list or tuple); garbage raises RemoteProtocolError."""
        if isinstance(data, Entry):
            return data
        if not isinstance(data, list | tuple) or len(data) != 5:
            raise RemoteProtocolError("bad_nodeset_entry", "an entry has five fields")
        addr, wall, logical, origin, present = data
        if not isinstance(addr, str) or not 0 < len(addr) <= _MAX_ADDR:
            raise RemoteProtocolError("bad_nodeset_entry", f"bad address {addr!r}")
        if not isinstance(present, bool):
            raise RemoteProtocolError("bad_nodeset_entry", f"present is not a bool: {present!r}")
        return cls(addr, Timestamp.checked(wall, logical, origin), present)


def _wins(new: Entry, old: Entry | None) -> bool:
    return old is None or new.rank() > old.rank()


def merge_states(a: Mapping[str, Entry], b: Mapping[str, Entry]) -> dict[str, Entry]:
    """The join of two states: per address, the larger entry. The CRDT's merge, pure."""
    out = dict(a)
    for addr, entry in b.items():
        if _wins(entry, out.get(addr)):
            out[addr] = entry
    return out


@dataclass(slots=True)
class MergeResult:
    """What a merge did: `changed` entries won (broadcast them on); the rest were refused."""

    changed: list[Entry] = field(default_factory=list)
    refused_drift: list[Entry] = field(default_factory=list)
    """Stamped too far in our future: not applied; the next anti-entropy brings them again."""
    refused_ghosts: int = 0
    """Below our collection floor for an address we do not know: never applied."""
    dropped: list[Entry] = field(default_factory=list)
    """Our own entries `merge_full` dropped as likely ghosts (as they were)."""
    needs_full_sync: bool = False
    """This replica is stale: ask a peer for its full state and `merge_full` it."""

    @property
    def members_changed(self) -> bool:
        """Whether anything a reader of `members()` sees may have moved."""
        return bool(self.changed or self.dropped)


class NodeSet:
    """This peer's replica of the cluster-wide node set."""

    def __init__(
        self,
        clock: HybridClock,
        *,
        horizon_ms: int = DEFAULT_HORIZON_MS,
        stale_after_ms: int | None = None,
        last_contact_ms: int | None = None,
        gc_floor_ms: int = 0,
    ) -> None:
        """A replica; `stale_after_ms` defaults to half the horizon.

        `stale_after_ms` must be at most `horizon_ms - clock.max_drift_ms`: a replica that
        full-syncs within that time still finds every tombstone it missed uncollected.
        `last_contact_ms`: the last full-state exchange with a peer; None (never) is not
        stale, since a replica that never met the cluster holds no ghost of its tombstones.
        """
        if stale_after_ms is None:
            stale_after_ms = horizon_ms // 2
        if stale_after_ms <= 0 or stale_after_ms + clock.max_drift_ms > horizon_ms:
            raise ValueError(
                "stale_after_ms must be positive and at most horizon_ms - max_drift_ms"
            )
        self.clock = clock
        self.horizon_ms = horizon_ms
        self.stale_after_ms = stale_after_ms
        self.last_contact_ms = last_contact_ms
        self.gc_floor_ms = gc_floor_ms
        self._entries: dict[str, Entry] = {}

    # -- local operations -------------------------------------------------------------

    def add(self, addr: str, now_ms: int) -> list[Entry]:
        """Put `addr` in the set (again); returns the entries to broadcast."""
        return [self._write(addr, now_ms, present=True)]

    def remove(self, addr: str, now_ms: int) -> list[Entry]:
        """Take `addr` out of the set, leaving a tombstone; returns the entries to broadcast.

        Removing an address this replica never heard of still writes a tombstone: the add
        may be on its way from another peer, and this later delete must beat it.
        """
        return [self._write(addr, now_ms, present=False)]

    def seed(self, addr: str) -> list[Entry]:
        """Put `addr` in the set with the lowest stamp there is, if we hold no entry for it.

        This is how `-nodes` is applied: a seed entry loses to every add and delete ever
        stamped by anyone, and lies below every collection floor, so a peer started with a
        stale `-nodes` list cannot bring back a node the cluster deleted, before or after its
        tombstone is collected (the ghost guard refuses it; a full-state exchange drops it
        here). It only adds what the cluster has no record of and never collected anything
        for (docs/cluster.md, "-nodes"). Returns the entries to broadcast.
        """
        if not isinstance(addr, str) or not 0 < len(addr) <= _MAX_ADDR:
            raise ValueError(f"a node address is 1 to {_MAX_ADDR} characters")
        if addr in self._entries:
            return []
        entry = Entry(addr, Timestamp(0, 0, self.clock.node_id), True)
        self._entries[addr] = entry
        return [entry]

    def _write(self, addr: str, now_ms: int, *, present: bool) -> Entry:
        if not isinstance(addr, str) or not 0 < len(addr) <= _MAX_ADDR:
            raise ValueError(f"a node address is 1 to {_MAX_ADDR} characters")
        entry = Entry(addr, self.clock.tick(now_ms), present)
        self._entries[addr] = entry  # a fresh stamp outranks everything seen: it always wins
        return entry

    # -- replication -----------------------------------------------------------------

    def is_stale(self, now_ms: int) -> bool:
        """True when this replica may have missed tombstones peers have since collected."""
        contact = self.last_contact_ms
        return contact is not None and now_ms - contact >= self.stale_after_ms

    def merge(self, entries: Iterable[Any], now_ms: int) -> MergeResult:
        """Merge entries from a peer (a broadcast delta); returns what changed.

        All entries are checked before any is applied: garbage raises RemoteProtocolError
        and changes nothing. A stale replica applies them too (the ghost guard holds) but
        sets `needs_full_sync`.
        """
        parsed = [Entry.from_wire(e) for e in entries]
        result = self._apply(parsed, now_ms)
        result.needs_full_sync = self.is_stale(now_ms)
        return result

    def merge_full(self, snapshot: Any, now_ms: int) -> MergeResult:
        """Merge a peer's full state (its `snapshot()`), as in a push/pull exchange.

        First our entries that the peer lacks and that are stamped below the peer's
        `gc_floor_ms` are dropped: the peer has collected tombstones down there, so they are
        likely ghosts of deleted nodes. Then the peer's entries merge as a delta would (the
        ghost guard uses our floor from before, so a new replica takes old entries in), and
        our floor rises to the peer's. The exchange counts as contact: we are not stale.
        """
        raw_entries, _, peer_floor = _parse_snapshot(snapshot)
        parsed = [Entry.from_wire(e) for e in raw_entries]
        theirs = {e.addr for e in parsed}
        dropped = sorted(
            e for a, e in self._entries.items() if a not in theirs and e.stamp.wall_ms < peer_floor
        )
        for entry in dropped:
            del self._entries[entry.addr]
        result = self._apply(parsed, now_ms)
        result.dropped = dropped
        self.gc_floor_ms = max(self.gc_floor_ms, peer_floor)
        self.last_contact_ms = now_ms
        return result

    def _apply(self, parsed: list[Entry], now_ms: int) -> MergeResult:
        result = MergeResult()
        for entry in parsed:
            if not self.clock.acceptable(entry.stamp, now_ms):
                result.refused_drift.append(entry)
                continue
            current = self._entries.get(entry.addr)
            if current is None and entry.stamp.wall_ms < self.gc_floor_ms:
                result.refused_ghosts += 1
                continue
            self.clock.update(entry.stamp, now_ms)
            if _wins(entry, current):
                self._entries[entry.addr] = entry
                result.changed.append(entry)
        return result

    def collect_tombstones(self, now_ms: int) -> list[str]:
        """Drop tombstones stamped more than `horizon_ms` ago; returns their addresses.

        The floor rises past each collected stamp, arming the ghost guard for it.
        """
        limit = now_ms - self.horizon_ms
        old = [e for e in self._entries.values() if not e.present and e.stamp.wall_ms < limit]
        for entry in old:
            del self._entries[entry.addr]
            self.gc_floor_ms = max(self.gc_floor_ms, entry.stamp.wall_ms + 1)
        return sorted(e.addr for e in old)

    # -- reading ---------------------------------------------------------------------

    def members(self) -> tuple[str, ...]:
        """The addresses in the set, sorted."""
        return tuple(sorted(a for a, e in self._entries.items() if e.present))

    def __contains__(self, addr: object) -> bool:
        entry = self._entries.get(addr) if isinstance(addr, str) else None
        return entry is not None and entry.present

    def get(self, addr: str) -> Entry | None:
        """The entry for `addr` (present or tombstone), None if there is none."""
        return self._entries.get(addr)

    def entries(self) -> list[Entry]:
        """Every entry, tombstones included, sorted by address."""
        return [self._entries[a] for a in sorted(self._entries)]

    def state(self) -> dict[str, Entry]:
        """A copy of the replica's state, address to entry (for `merge_states` and tests)."""
        return dict(self._entries)

    def digest(self) -> str:
        """A checksum of all entries (live and tombstones): equal on peers with equal state."""
        return state_digest(self._entries)

    # -- persistence -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The replica as plain msgpack/JSON-friendly data: for disk and for full syncs."""
        return {
            "v": SNAPSHOT_VERSION,
            "entries": [list(e.to_wire()) for e in self.entries()],
            "last_contact_ms": self.last_contact_ms,
            "gc_floor_ms": self.gc_floor_ms,
        }

    @classmethod
    def from_snapshot(
        cls,
        data: Any,
        clock: HybridClock,
        *,
        horizon_ms: int = DEFAULT_HORIZON_MS,
        stale_after_ms: int | None = None,
    ) -> NodeSet:
        """Restore a replica from its own `snapshot()` (from disk, after a restart).

        The clock is moved past every stamp in it. The saved `last_contact_ms` is kept, so a
        replica restored from an old snapshot is stale until its first full sync.
        Garbage raises RemoteProtocolError.
        """
        raw_entries, contact, floor = _parse_snapshot(data)
        replica = cls(
            clock,
            horizon_ms=horizon_ms,
            stale_after_ms=stale_after_ms,
            last_contact_ms=contact,
            gc_floor_ms=floor,
        )
        for entry in (Entry.from_wire(e) for e in raw_entries):
            if _wins(entry, replica._entries.get(entry.addr)):
                replica._entries[entry.addr] = entry
            clock.witness(entry.stamp)
        return replica


def state_digest(state: Mapping[str, Entry]) -> str:
    """The digest of a state: blake2b-128 of its entries in address order, as hex."""
    canon = json.dumps(
        [list(state[a].to_wire()) for a in sorted(state)],
        ensure_ascii=True,
        separators=(",", ":"),
    )
    return hashlib.blake2b(canon.encode(), digest_size=16).hexdigest()


def _parse_snapshot(data: Any) -> tuple[list[Any], int | None, int]:
    if not isinstance(data, Mapping) or data.get("v") != SNAPSHOT_VERSION:
        raise RemoteProtocolError("bad_nodeset_snapshot", "unknown snapshot version")
    raw_entries = data.get("entries")
    contact = data.get("last_contact_ms")
    floor = data.get("gc_floor_ms", 0)
    if (
        not isinstance(raw_entries, list)
        or not (contact is None or type(contact) is int)
        or type(floor) is not int
    ):
        raise RemoteProtocolError("bad_nodeset_snapshot", "malformed snapshot")
    return raw_entries, contact, floor
