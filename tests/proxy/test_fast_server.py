"""The fast plane's connection housekeeping, without sockets."""

from __future__ import annotations

from typing import Any

from fnlb.peer.core import LONE_NAME, Peer
from fnlb.proxy import fast_server
from fnlb.proxy.fast_server import ClientConnection, FastProxy
from fnlb.routing.policies import RendezvousPolicy


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False

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
