"""HTTP/1.1 pieces of the fast data plane as bytes: header classes, framing, error answers.

Sans-I/O and allocation-aware: the fast path (fnlb.proxy.fast_server) builds each message it
sends as one bytes join of parts it already holds, never a header map. What is hop-by-hop
and what is rewritten is the same as the aiohttp path's (fnlb.proxy.handler): the two paths
must send the same bytes' meaning to nodes and clients.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Final

from yarl import URL

from fnlb.observe.tracing import CONTEXT_HEADERS

MAX_FIELD: Final = 64 * 1024
"""Longest request line or header field (name and value) taken from clients and nodes, as
the aiohttp path's `max_field_size`: Go's servers take long tokens that 8 KiB refused."""
MAX_HEAD: Final = 1 << 20
"""Largest request or response head in all (Go's `http.DefaultMaxHeaderBytes`)."""


class HeadTooLarge(ValueError):
    """A head or header field over the limits (raised inside a parser callback)."""


def charge_field(head_left: int, name: bytes, value: bytes) -> int:
    """What is left of MAX_HEAD after one header field; HeadTooLarge for a field over
    MAX_FIELD or a head over MAX_HEAD. Both directions call it, only for heads that span
    reads (a head within one small read cannot break either limit)."""
    size = len(name) + len(value)
    head_left -= size
    if size > MAX_FIELD or head_left < 0:
        raise HeadTooLarge("header field over 64 KiB, or head over 1 MiB")
    return head_left


# What a header is to the proxy, by its lower-cased name. Anything absent is end-to-end and
# copied as it came (PLAIN in the caches by exact name below).
PLAIN: Final = 0
DROP: Final = 1
"""Hop-by-hop (RFC 9110 7.6.1): never copied."""
CONNECTION: Final = 2
CONTENT_LENGTH: Final = 3
TRANSFER_ENCODING: Final = 4
EXPECT: Final = 5
HOST: Final = 6
XFF: Final = 7
XF_PROTO: Final = 8
XF_HOST: Final = 9
RETRY_AFTER: Final = 10
FXLB_WAIT: Final = 11
TRACE_CONTEXT: Final = 12

_HOP_BY_HOP: Final[dict[bytes, int]] = {
    b"connection": CONNECTION,
    b"keep-alive": DROP,
    b"proxy-authenticate": DROP,
    b"proxy-authorization": DROP,
    b"proxy-connection": DROP,
    b"te": DROP,
    b"trailer": DROP,
    b"trailers": DROP,
    b"upgrade": DROP,
    b"transfer-encoding": TRANSFER_ENCODING,
}
"""Hop-by-hop headers (RFC 9110 7.6.1), the same both ways: never copied as they came."""

REQUEST_HEADERS: Final[dict[bytes, int]] = {
    **_HOP_BY_HOP,
    b"expect": EXPECT,
    b"content-length": CONTENT_LENGTH,
    b"host": HOST,
    b"x-forwarded-for": XFF,
    b"x-forwarded-proto": XF_PROTO,
    b"x-forwarded-host": XF_HOST,
    **{name.encode(): TRACE_CONTEXT for name in (*CONTEXT_HEADERS, "x-b3-flags")},
}
"""Request headers the proxy does not copy blindly. Content-Length and Host are copied too
(they are end-to-end) but also read; so are a caller's trace context headers (noted, so a
traced call looks for a context only in requests that carry one)."""

RESPONSE_HEADERS: Final[dict[bytes, int]] = {
    **_HOP_BY_HOP,
    b"content-length": CONTENT_LENGTH,
    b"retry-after": RETRY_AFTER,
    b"xxx-fxlb-wait": FXLB_WAIT,
}
"""Response headers the proxy reads; Content-Length, Retry-After and the wait are copied."""

_KINDS_CACHE: Final = 4096


def _seeded(table: dict[bytes, int]) -> dict[bytes, int]:
    seeded = dict(table)
    for name, kind in table.items():
        seeded[b"-".join(part.capitalize() for part in name.split(b"-"))] = kind
    return seeded


REQUEST_KINDS: Final = _seeded(REQUEST_HEADERS)
"""REQUEST_HEADERS by a name's exact bytes (PLAIN for any other), learnt as names come:
the parsers' per-header callbacks look a name up as it came, with no `lower()` copy a
header (#15: a header's callback was a few % of a call). Bounded (`kind_of`)."""
RESPONSE_KINDS: Final = _seeded(RESPONSE_HEADERS)
"""RESPONSE_HEADERS by a name's exact bytes, as REQUEST_KINDS."""


def kind_of(kinds: dict[bytes, int], table: dict[bytes, int], name: bytes) -> int:
    """What header `name` is (`table` by its lower case, PLAIN if absent), remembered in
    `kinds` under the name as it came; the first time a spelling is seen only."""
    kind = table.get(name.lower(), PLAIN)
    if len(kinds) >= _KINDS_CACHE:  # many distinct names: start again from the table
        kinds.clear()
        kinds.update(_seeded(table))
    kinds[name] = kind
    return kind


_PLAIN_CONNECTION: Final = frozenset({b"keep-alive", b"close", b""})
PLAIN_CONNECTION: Final = frozenset(
    v for token in _PLAIN_CONNECTION for v in (token, token.title(), token.upper())
)
"""`Connection` values that name no header, as nodes spell them: no `connection_options`."""

CRLF: Final = b"\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNKED_HEADER: Final = b"Transfer-Encoding: chunked\r\n"
CLOSE_HEADER: Final = b"Connection: close\r\n"
KEEP_ALIVE_HEADER: Final = b"Connection: keep-alive\r\n"

_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}
_STATUS_LINE_CACHE: Final = 512


def status_line(status: int, reason: bytes) -> bytes:
    """`HTTP/1.1 <status> <reason>\\r\\n`, kept for the few pairs nodes send (bounded)."""
    key = (status, reason)
    line = _STATUS_LINES.get(key)
    if line is None:
        if len(_STATUS_LINES) >= _STATUS_LINE_CACHE:
            _STATUS_LINES.clear()
        line = _STATUS_LINES[key] = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    return line


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (never empty: an empty chunk ends the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


_OPTIONS: dict[bytes, frozenset[bytes]] = {}
_OPTIONS_CACHE: Final = 256


def connection_options(value: bytes) -> frozenset[bytes]:
    """The header names a `Connection` header lists beyond keep-alive and close (lower case).

    They are hop-by-hop too (RFC 9110 7.6.1); empty for the usual `keep-alive` or `close`.
    Nodes send the same value on every answer, so results are kept (bounded).
    """
    found = _OPTIONS.get(value)
    if found is None:
        if len(_OPTIONS) >= _OPTIONS_CACHE:
            _OPTIONS.clear()
        tokens = {t.strip().lower() for t in value.split(b",")}
        found = _OPTIONS[value] = frozenset(tokens - _PLAIN_CONNECTION)
    return found


def without_named(fields: list[bytes], names: frozenset[bytes]) -> list[bytes]:
    """`fields` (name, b": ", value, CRLF, ...) without the headers called one of `names`."""
    out: list[bytes] = []
    for i in range(0, len(fields), 4):
        if fields[i].lower() not in names:
            out += fields[i : i + 4]
    return out


def is_chunked(transfer_encoding: bytes) -> bool:
    """Whether a Transfer-Encoding value ends with chunked (the parser checked the rest)."""
    return transfer_encoding.rsplit(b",", 1)[-1].strip().lower() == b"chunked"


def decoded_path(target: bytes) -> str:
    """The decoded path of a request target (no query), as aiohttp's `request.path` gives."""
    raw = target.decode("utf-8", "surrogateescape")
    if raw[:1] == "/" and "%" not in raw and "#" not in raw:
        return raw.partition("?")[0]
    return URL(raw, encoded=True).path if raw[:1] == "/" else URL(raw).path


def json_answer(status: int, msg: str, *, close: bool, head_only: bool = False) -> bytes:
    """A whole answer `{"msg": ...}` in the original fnlb's JSON shape (fnlb.api.jsonio)."""
    body = json.dumps({"msg": msg}, separators=(",", ":")).encode() + b"\n"
    try:
        reason = HTTPStatus(status).phrase.encode()
    except ValueError:
        reason = b"Error"
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\n" % (
        status,
        reason,
    )
    head += b"Content-Length: %d\r\n%s\r\n" % (len(body), CLOSE_HEADER if close else b"")
    return head if head_only else head + body


def node_address(node: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` as a (host, port) to connect to; ValueError if malformed."""
    host, sep, port = node.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"node address {node!r} has no port")
    return host.strip("[]"), int(port)
