"""The fast plane's connection housekeeping, without sockets."""

from __future__ import annotations

from typing import Any

import pytest

from fnlb.peer.core import LONE_NAME, Peer
from fnlb.proxy import fast_server
from fnlb.proxy.fast_server import ClientConnection, FastProxy
from fnlb.proxy.http1 import REQUEST_HEADERS, REQUEST_KINDS, kind_of
from fnlb.proxy.upstream_pool import UpstreamConnection
from fnlb.routing.policies import RendezvousPolicy


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else None

    def close(self) -> None:
        self.closed = True


def proxy() -> FastProxy:
    peer = Peer(LONE_NAME, routing=RendezvousPolicy(), clock_ms=lambda: 0, gossip=False)
    return FastProxy(peer, connect_timeout=1.0)


async def test_an_idle_client_connection_is_closed_after_the_idle_rounds() -> None:
    p = proxy()
    idle, busy = ClientConnection(p), ClientConnection(p)
    transports = [FakeTransport(), FakeTransport()]
    for conn, t in zip((idle, busy), transports, strict=True):
        conn.connection_made(t)  # type: ignore[arg-type]
    for _ in range(fast_server._IDLE_ROUNDS + 1):  # the first only clears "seen at start"
        assert not transports[0].closed
        busy.seen = True  # it keeps receiving requests
        p._sweep()
    assert transports[0].closed
    assert not transports[1].closed
    assert p.connections == {busy}
    if p._sweeper is not None:
        p._sweeper.cancel()


def _fed(conn: ClientConnection | UpstreamConnection, head: bytes, piece: int) -> FakeTransport:
    t = FakeTransport()
    conn.connection_made(t)  # type: ignore[arg-type]
    for i in range(0, len(head), piece):
        conn.data_received(head[i : i + piece])
    return t


BIG_FIELD = b"X-Big: " + b"b" * 70_000 + b"\r\n"
MANY_FIELDS = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 1000) for i in range(1100))  # > 1 MiB


@pytest.mark.parametrize("piece", [1 << 20, 70_000, 4096, 100])
@pytest.mark.parametrize("fields", [BIG_FIELD, MANY_FIELDS], ids=["one field", "many fields"])
async def test_a_request_head_over_the_limits_is_refused_whatever_its_reads(
    piece: int, fields: bytes
) -> None:
    """Sizes are checked only for heads that span reads or come in a read over 64 KiB:
    a field over 64 KiB, or a head over 1 MiB, is refused however it is split."""
    conn = ClientConnection(proxy())
    t = _fed(conn, b"GET /r/a/f HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n", piece)
    assert t.written
    assert t.written[0].startswith(b"HTTP/1.1 431 ")
    assert t.closed


async def test_a_head_of_small_fields_under_the_limits_is_taken() -> None:
    conn = ClientConnection(proxy())
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 1000) for i in range(60))
    t = _fed(conn, b"GET /r/a/f HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n", 4096)
    assert t.written
    assert t.written[0].startswith(b"HTTP/1.1 503 ")


class _Exchange:
    def __init__(self) -> None:
        self.bad: list[Exception] = []

    def on_bad(self, up: UpstreamConnection, exc: Exception) -> None:
        self.bad.append(exc)

    def flush(self) -> None:
        return None


@pytest.mark.parametrize("piece", [1 << 20, 4096])
async def test_an_answer_header_over_64_kib_is_a_bad_answer_whatever_its_reads(
    piece: int,
) -> None:
    up = UpstreamConnection(proxy().pool, "127.0.0.1:1")
    ex = _Exchange()
    up.exchange = ex  # type: ignore[assignment]
    _fed(up, b"HTTP/1.1 200 OK\r\n" + BIG_FIELD + b"Content-Length: 0\r\n\r\n", piece)
    assert len(ex.bad) == 1


def test_header_kinds_are_learnt_by_exact_name_and_stay_bounded() -> None:
    kinds = dict(REQUEST_KINDS)
    assert (
        kinds[b"Content-Length"] == kinds[b"content-length"] == REQUEST_HEADERS[b"content-length"]
    )
    assert kind_of(kinds, REQUEST_HEADERS, b"CONTENT-LENGTH") == REQUEST_HEADERS[b"content-length"]
    assert kinds[b"CONTENT-LENGTH"] == REQUEST_HEADERS[b"content-length"]
    assert kind_of(kinds, REQUEST_HEADERS, b"X-Anything") == 0  # end-to-end
    for i in range(5000):
        kind_of(kinds, REQUEST_HEADERS, b"X-N%d" % i)
    assert len(kinds) <= 4096
    assert kinds[b"content-length"] == REQUEST_HEADERS[b"content-length"]  # the table stays


def test_routes_are_kept_by_target_bounded_in_entries_and_size() -> None:
    fast_server._ROUTES.clear()
    assert fast_server._route(b"/r/app/fn%20x?q=1") == ("/r/app/fn x", "r/app/fn x")
    assert fast_server._ROUTES[b"/r/app/fn%20x?q=1"] == ("/r/app/fn x", "r/app/fn x")
    long = b"/r/app/" + b"f" * 600
    assert fast_server._route(long) == (long.decode(), long.decode()[1:])
    assert long not in fast_server._ROUTES  # long targets are decoded each time
    for i in range(fast_server._ROUTES_MAX + 10):
        fast_server._route(b"/invoke/%d" % i)
    assert len(fast_server._ROUTES) <= fast_server._ROUTES_MAX
