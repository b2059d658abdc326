"""The load digest: one peer's load figures as size-bounded msgpack, and its strict decoder.

Rule 1: no asyncio, socket, time or global random here.
Rule 2: `decode_digest` either returns a `Digest` or raises RemoteProtocolError(reason); no
other exception leaves it, whatever the bytes.

A digest rides one gossip broadcast (a budget of about 1000 bytes) several times a second, and
a larger variant rides push-pull. It can never carry 10,000 functions in 1000 bytes, so it
carries the hottest functions per node, the next ones by their totals, and lumps the rest;
the encoder fills the budget greedily, knowing every piece's encoded size before it commits
to it: the result is never longer than the budget.

Wire format (all figures are non-negative integers in fixed units, so sums of them are exact
and identical on every peer):

    digest = msgpack array [
        VERSION,            1
        epoch,              uint: chosen by the sender at start (e.g. wall-clock ms), so a
                            restarted peer's digests order after its old ones
        seq,                uint: +1 per digest; receivers keep the highest (epoch, seq)
        stamp_ms,           uint: the sender's wall clock when it made the digest, in ms since
                            the Unix epoch (0: unknown); lets every peer pick the same digest
                            of each peer for decisions (ClusterLoad's settled reads)
        nodes,              flat array [name, rate_c, in_flight, wait_ms, busy_c, ...]:
                            node totals (all functions) of the listed nodes; a function entry
                            names a node by its index here (position / 5)
        functions,          array of [fn, node_index, rate_c, in_flight, wait_ms, busy_c, ...]:
                            the hottest functions, each with its figures on every node
        totals,             flat array [fn, rate_c, in_flight, wait_ms, busy_c, ...]: the next
                            hottest, by their totals over all nodes (no node names to pay for)
        rest,               [count, rate_c, in_flight, busy_c]: functions not listed
        other_nodes,        [count, rate_c, in_flight, busy_c]: nodes not listed
    ]

Units: rate_c and busy_c are centi-calls per second (1.00 call/s = 100), wait_ms is
milliseconds, in_flight is a count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from fnlb import msgpack_bounds
from fnlb.errors import LocalProtocolError, RemoteProtocolError

VERSION: Final = 1
"""First field of every digest."""

GOSSIP_BUDGET_BYTES: Final = 1000
"""Default size of the digest broadcast a few times a second (fits one SWIM packet)."""
FULL_BUDGET_BYTES: Final = 1024 * 1024
"""Default size of the digest carried by push-pull: 10,000 busy functions need ~0.4 MB."""
DETAIL_SHARE: Final = 0.6
"""Share of the budget that functions listed per node may fill; the rest goes to functions
listed by their totals only (about 3 of those fit in the bytes of one listed per node)."""
MIN_BUDGET_BYTES: Final = 128
"""Smallest budget `encode_digest` accepts: header and both lumps always fit in it."""
MAX_DIGEST_BYTES: Final = 4 * 1024 * 1024
"""Largest digest decoded at all; larger input is refused unread."""

MAX_NODES: Final = 4096
MAX_FUNCTIONS: Final = 200_000
MAX_NODE_NAME: Final = 255
MAX_FUNCTION_NAME: Final = 1024
MAX_RATE_C: Final = 10**10
"""Largest rate on the wire, centi-calls/s (10^8 calls/s); larger figures are clamped."""
MAX_IN_FLIGHT: Final = 10**8
MAX_WAIT_MS: Final = 86_400_000
MAX_COUNT: Final = 10**8
MAX_UINT64: Final = 2**64 - 1

Row = tuple[int, int, int, int]
"""(rate_c, in_flight, wait_ms, busy_c) in wire units."""
ZERO_ROW: Final[Row] = (0, 0, 0, 0)

# Reasons (counter labels) a digest is dropped under.
TOO_LARGE = "load_too_large"
MALFORMED = "load_malformed"
BAD_VERSION = "load_bad_version"
BAD_SHAPE = "load_bad_shape"
BAD_FIELD = "load_bad_field"
TOO_DEEP = "load_too_deep"
TOO_MANY_ITEMS = "load_too_many_items"
TOO_INFLATED = "load_too_inflated"
REASONS = (
    TOO_LARGE,
    MALFORMED,
    BAD_VERSION,
    BAD_SHAPE,
    BAD_FIELD,
    TOO_DEEP,
    TOO_MANY_ITEMS,
    TOO_INFLATED,
)

_LUMP_MAX_BYTES = 1 + 4 * 9  # fixarray + four uint64 at most
_ARRAY_HEADER_MAX = 5  # array32
_MAX_SKIPS = 32  # consecutive entries that do not fit before the encoder stops looking


def _units(x: float, scale: float, cap: int) -> int:
    v = x * scale
    if not v > 0.0:  # negative, zero or NaN
        return 0
    return cap if v >= cap else min(cap, round(v))


def quantise(rate: float, in_flight: int, wait_s: float, busy_rate: float) -> Row:
    """Figures in wire units, rounded and clamped to the caps the decoder enforces (a NaN or
    negative figure becomes 0, an infinite one the cap)."""
    return (
        _units(rate, 100.0, MAX_RATE_C),
        min(MAX_IN_FLIGHT, max(0, in_flight)),
        _units(wait_s, 1000.0, MAX_WAIT_MS),
        _units(busy_rate, 100.0, MAX_RATE_C),
    )


@dataclass(frozen=True, slots=True)
class Lump:
    """What a digest says about entries it does not list one by one."""

    count: int
    rate_c: int
    in_flight: int
    busy_c: int


EMPTY_LUMP: Final = Lump(0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Digest:
    """One peer's decoded digest. Figures are `Row`s in wire units."""

    epoch: int
    seq: int
    stamp_ms: int
    """The sender's wall clock when it made the digest, ms since the Unix epoch (0: unknown)."""
    nodes: Mapping[str, Row]
    """Node totals over all this peer's functions, for the nodes listed."""
    functions: Mapping[str, Mapping[str, Row]]
    """Function -> node -> figures, for the hottest functions, listed per node."""
    totals: Mapping[str, Row]
    """Function -> figures summed over its nodes, for the next hottest."""
    rest: Lump
    """Functions not listed: how many and their summed figures."""
    other_nodes: Lump
    """Nodes not listed: how many and their summed figures."""

    @property
    def order(self) -> tuple[int, int]:
        """Newer digests from one peer compare greater."""
        return (self.epoch, self.seq)


# --- encoding -------------------------------------------------------------------------------


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 0x10000:
        return bytes([0xDC, n >> 8, n & 0xFF])
    return b"\xdd" + n.to_bytes(4, "big")


_PACKER: Final = msgpack.Packer(use_bin_type=True)  # reused: packb builds one per call


def _pack(obj: Any) -> bytes:
    out: bytes = _PACKER.pack(obj)
    return out


def _node_piece(name: str, row: Row) -> bytes:
    """A node's five flat fields: a 5-array packed whole, its 1-byte header cut off."""
    return _pack([name, *row])[1:]


def _encodable(name: str, cap: int) -> bool:
    """Whether the decoder will accept `name` (1..cap characters, at most 1024 UTF-8 bytes)."""
    if not 0 < len(name) <= cap:
        return False
    try:
        return len(name.encode("utf-8")) <= MAX_FUNCTION_NAME
    except UnicodeEncodeError:
        return False


def _lump_piece(v: list[int]) -> bytes:
    caps = (MAX_COUNT, MAX_RATE_C, MAX_IN_FLIGHT, MAX_RATE_C)
    return _pack([min(x, cap) for x, cap in zip(v, caps, strict=True)])


def function_total(cells: Iterable[tuple[str, Row]]) -> Row:
    """A function's row over its nodes: sums, and the wait weighted by each node's rate."""
    r = i = b = wsum = weight = 0
    for _node, (cr, ci, cw, cb) in cells:
        r += cr
        i += ci
        b += cb
        wsum += cw * max(cr, 1)
        weight += max(cr, 1)
    return (r, i, wsum // weight if weight else 0, b)


def encode_digest(
    *,
    epoch: int,
    seq: int,
    functions: Iterable[tuple[str, Sequence[tuple[str, Row]]]],
    nodes: Sequence[tuple[str, Row]],
    totals: Row,
    function_count: int,
    budget: int = GOSSIP_BUDGET_BYTES,
    detail_share: float = DETAIL_SHARE,
    stamp_ms: int = 0,
) -> bytes:
    """A digest of at most `budget` bytes.

    `functions`: hottest first, each with its non-zero per-node figures (consumed lazily, only
    as far as the budget goes). `nodes`: every node's totals, busiest first. `totals`: the sum
    over all functions (what the lumps are computed from), `function_count`: how many
    functions the peer tracks.

    Each function in turn is listed per node if that keeps the digest within
    `detail_share * budget` (node names cost bytes), else by its totals only if that fits the
    budget, else lumped (a smaller one after it may still fit). The nodes named are listed
    with their totals, then the busiest other nodes while room remains.
    """
    if not MIN_BUDGET_BYTES <= budget <= MAX_DIGEST_BYTES:
        raise LocalProtocolError(f"digest budget {budget} outside {MIN_BUDGET_BYTES}..")
    if not all(0 <= v <= MAX_UINT64 for v in (epoch, seq, stamp_ms)):
        raise LocalProtocolError("digest epoch, seq and stamp must be uint64")
    head = _pack(VERSION) + _pack(epoch) + _pack(seq) + _pack(stamp_ms)
    used = 1 + len(head) + 3 * _ARRAY_HEADER_MAX + 2 * _LUMP_MAX_BYTES
    detail_limit = budget * detail_share
    node_rows = dict(nodes)
    node_index: dict[str, int] = {}
    node_pieces: list[bytes] = []
    fn_pieces: list[bytes] = []
    total_pieces: list[bytes] = []
    listed = [0, 0, 0]  # rate_c, in_flight, busy_c of listed functions
    skips = 0
    for fn, cells in functions:
        if skips >= _MAX_SKIPS or budget - used < 8:
            break
        if len(fn_pieces) + len(total_pieces) >= MAX_FUNCTIONS:
            break
        if not cells or not _encodable(fn, MAX_FUNCTION_NAME):
            continue
        total = function_total(cells)
        cost = 0
        new: dict[str, int] = {}
        if used < detail_limit and all(
            n in node_index or _encodable(n, MAX_NODE_NAME) for n, _row in cells
        ):
            entry: list[Any] = [fn]
            for node, row in cells:
                idx = node_index.get(node)
                if idx is None:
                    idx = new.get(node)
                    if idx is None:
                        idx = new[node] = len(node_index) + len(new)
                entry.append(idx)
                entry.extend(row)
            new_pieces = [_node_piece(n, node_rows.get(n, ZERO_ROW)) for n in new]
            piece = _pack(entry)
            cost = len(piece) + sum(len(p) for p in new_pieces)
            if used + cost <= detail_limit and len(node_index) + len(new) <= MAX_NODES:
                node_index.update(new)
                node_pieces.extend(new_pieces)
                fn_pieces.append(piece)
            else:
                cost = 0
        if not cost:
            piece = _pack([fn, *total])[1:]
            if used + len(piece) > budget:
                skips += 1
                continue
            cost = len(piece)
            total_pieces.append(piece)
        skips = 0
        used += cost
        listed[0] += total[0]
        listed[1] += total[1]
        listed[2] += total[3]
    skips = 0
    for node, row in nodes:
        if skips >= _MAX_SKIPS or budget - used < 8 or len(node_index) >= MAX_NODES:
            break
        if node in node_index or row == ZERO_ROW or not _encodable(node, MAX_NODE_NAME):
            continue
        piece = _node_piece(node, row)
        if used + len(piece) > budget:
            skips += 1
            continue
        used += len(piece)
        node_index[node] = len(node_index)
        node_pieces.append(piece)
    rate_c, in_flight, _wait, busy_c = totals
    rest = [
        max(0, function_count - len(fn_pieces) - len(total_pieces)),
        max(0, rate_c - listed[0]),
        max(0, in_flight - listed[1]),
        max(0, busy_c - listed[2]),
    ]
    other = [len(node_rows) - len(node_index), 0, 0, 0]
    for node, (r, i, _w, b) in nodes:
        if node not in node_index:
            other[1] += r
            other[2] += i
            other[3] += b
    out = b"".join(
        [
            b"\x99",
            head,
            _array_header(5 * len(node_pieces)),
            *node_pieces,
            _array_header(len(fn_pieces)),
            *fn_pieces,
            _array_header(5 * len(total_pieces)),
            *total_pieces,
            _lump_piece(rest),
            _lump_piece(other),
        ]
    )
    if len(out) > budget:  # pragma: no cover - the accounting above reserves worst cases
        raise LocalProtocolError(f"digest of {len(out)} bytes exceeds budget {budget}")
    return out


# --- decoding -------------------------------------------------------------------------------


# Issue #12: bounded like every msgpack path (fnlb.msgpack_bounds): a digest is a list of
# figures and names, lists of lists inside at most. Peers' digests arrive in datagrams
# (< 64 KiB: at most ~65,000 items, a few ms); the item cap covers an honest full digest
# (1 MiB budget: ~460,000 items at the measured 156,000 per 344 KB).
_LIMITS = msgpack_bounds.Limits(
    max_bytes=MAX_DIGEST_BYTES,
    max_depth=3,
    max_items=512 * 1024,
    max_array=5 * MAX_FUNCTIONS,
    max_str=MAX_FUNCTION_NAME,
    slack=4 << 20,  # honest digests are small lists of ints: ~17 x their bytes as lists
    prefix="load_",
    malformed=MALFORMED,
)


def _unpack(data: bytes) -> Any:
    """The digest's msgpack within bounds; RemoteProtocolError(reason) otherwise (Rule 2)."""
    return msgpack_bounds.unpack(data, _LIMITS)


def _uint(v: Any, cap: int, what: str) -> int:
    if type(v) is not int or not 0 <= v <= cap:
        raise RemoteProtocolError(BAD_FIELD, f"{what} must be an integer in 0..{cap}")
    return v


def _str(v: Any, cap: int, what: str) -> str:
    if type(v) is not str or not 0 < len(v) <= cap:
        raise RemoteProtocolError(BAD_FIELD, f"{what} must be a string of 1..{cap} characters")
    return v


def _row(m: list[Any], at: int) -> Row:
    return (
        _uint(m[at], MAX_RATE_C, "rate"),
        _uint(m[at + 1], MAX_IN_FLIGHT, "in-flight"),
        _uint(m[at + 2], MAX_WAIT_MS, "wait"),
        _uint(m[at + 3], MAX_RATE_C, "busy rate"),
    )


def _lump(v: Any) -> Lump:
    if type(v) is not list or len(v) != 4:
        raise RemoteProtocolError(BAD_SHAPE, "a lump is [count, rate, in_flight, busy]")
    return Lump(
        _uint(v[0], MAX_COUNT, "count"),
        _uint(v[1], MAX_RATE_C, "rate"),
        _uint(v[2], MAX_IN_FLIGHT, "in-flight"),
        _uint(v[3], MAX_RATE_C, "busy rate"),
    )


def decode_digest(data: bytes) -> Digest:
    """A peer's digest, or RemoteProtocolError(reason) for anything malformed."""
    if type(data) is not bytes or not data:
        raise RemoteProtocolError(MALFORMED, "empty")
    if len(data) > MAX_DIGEST_BYTES:
        raise RemoteProtocolError(TOO_LARGE, f"{len(data)} bytes")
    m = _unpack(data)
    if type(m) is not list or len(m) != 9:
        raise RemoteProtocolError(BAD_SHAPE, "a digest is an array of 9 fields")
    if m[0] != VERSION or type(m[0]) is not int:
        raise RemoteProtocolError(BAD_VERSION, repr(m[0])[:20])
    epoch = _uint(m[1], MAX_UINT64, "epoch")
    seq = _uint(m[2], MAX_UINT64, "seq")
    stamp_ms = _uint(m[3], MAX_UINT64, "stamp")
    flat = m[4]
    if type(flat) is not list or len(flat) % 5 or len(flat) > 5 * MAX_NODES:
        raise RemoteProtocolError(BAD_SHAPE, "nodes is a flat array of 5-tuples")
    names: list[str] = []
    nodes: dict[str, Row] = {}
    for at in range(0, len(flat), 5):
        name = _str(flat[at], MAX_NODE_NAME, "node name")
        if name in nodes:
            raise RemoteProtocolError(BAD_FIELD, "node listed twice")
        nodes[name] = _row(flat, at + 1)
        names.append(name)
    entries = m[5]
    if type(entries) is not list or len(entries) > MAX_FUNCTIONS:
        raise RemoteProtocolError(BAD_SHAPE, "functions is an array")
    functions: dict[str, dict[str, Row]] = {}
    for e in entries:
        if type(e) is not list or len(e) < 6 or (len(e) - 1) % 5:
            raise RemoteProtocolError(BAD_SHAPE, "a function entry is [fn, (node, 4 figures)+]")
        fn = _str(e[0], MAX_FUNCTION_NAME, "function")
        if fn in functions:
            raise RemoteProtocolError(BAD_FIELD, "function listed twice")
        cells: dict[str, Row] = {}
        for at in range(1, len(e), 5):
            idx = e[at]
            if type(idx) is not int or not 0 <= idx < len(names):
                raise RemoteProtocolError(BAD_FIELD, "node index out of range")
            node = names[idx]
            if node in cells:
                raise RemoteProtocolError(BAD_FIELD, "node listed twice for one function")
            cells[node] = _row(e, at + 1)
        functions[fn] = cells
    flat = m[6]
    if type(flat) is not list or len(flat) % 5 or len(flat) > 5 * MAX_FUNCTIONS:
        raise RemoteProtocolError(BAD_SHAPE, "totals is a flat array of 5-tuples")
    totals: dict[str, Row] = {}
    for at in range(0, len(flat), 5):
        fn = _str(flat[at], MAX_FUNCTION_NAME, "function")
        if fn in functions or fn in totals:
            raise RemoteProtocolError(BAD_FIELD, "function listed twice")
        totals[fn] = _row(flat, at + 1)
    return Digest(epoch, seq, stamp_ms, nodes, functions, totals, _lump(m[7]), _lump(m[8]))
