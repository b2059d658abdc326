"""A call never goes out on a pooled connection the node has already closed.

A node that dies (or closes an idle keep-alive connection) sends its FIN or RST at once, but
fnlb's event loop may read it only after a call has taken that connection from the pool: a
call written there fails before any answer, and a POST could not be retried (it may have
run). The pool must see the closed connection for what it is when the call takes it, so the
call goes to a live connection or the next node, whatever its method.

The race is made certain here, not hoped for, in two ways: the node writes its answer and
its FIN together, and a second request pipelined behind the first is started from the same
read that delivers the answer (the fast plane, before the loop has read the FIN); or the node
dies while the second call is being routed, before fnlb looks in its pool (both planes).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence

import pytest

from tests.support import Backend, LoopbackNode, running_balancer, wait_for

VERSION = b'HTTP/1.1 200 OK\r\nContent-Length: 21\r\n\r\n{"version":"0.3.750"}'
NO_METRICS = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ndying."


class DyingNode(LoopbackNode):
    """Answers health checks; answers its first call keep-alive and, if `dies_answering`,
    dies in the same breath: the answer, then the FIN on that connection, then its listener
    closed (a new connection is refused). Else `die` does that when told. Counts the calls
    it read."""

    def __init__(self, dies_answering: bool) -> None:
        self.dies_answering = dies_answering
        self.calls = 0
        self.dead = False
        self._open: list[asyncio.StreamWriter] = []

    def die(self) -> None:
        """A FIN on every open connection and the listener closed, before this returns."""
        self.dead = True
        for writer in self._open:
            fin(writer)
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.append(writer)
        try:
            while not self.dead:
                head = await reader.readuntil(b"\r\n\r\n")
                if self.dead:  # a dead node reads nothing more
                    return
                if head.startswith(b"GET /version "):  # health checks
                    writer.write(VERSION)
                    continue
                if head.startswith(b"GET /metrics "):
                    writer.write(NO_METRICS)
                    continue
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.calls += 1
                writer.write(ANSWER)  # sent at once: nothing else is waiting to be written
                if self.dies_answering:
                    self.die()  # the FIN right behind the answer
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._open.remove(writer)
            writer.close()


def fin(writer: asyncio.StreamWriter) -> None:
    """Send the connection's FIN now: a duplicate descriptor shuts the same socket down (the
    transport would close it on a later turn of the loop)."""
    fd = writer.get_extra_info("socket").fileno()
    with socket.socket(fileno=socket.dup(fd)) as same:
        same.shutdown(socket.SHUT_WR)


@pytest.fixture(params=[True, False], ids=["dies answering", "dies as a call arrives"])
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[tuple[DyingNode, Backend]]:
    dying, live = DyingNode(request.param), Backend("live")
    await dying.start()
    await live.start()
    yield dying, live
    await dying.stop()
    await live.stop()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return int(head.split(b" ", 2)[1]), await reader.readexactly(length)


@pytest.mark.parametrize("method", [b"POST", b"GET"])
async def test_a_call_on_a_connection_the_node_just_closed_goes_to_the_next_node(
    nodes: tuple[DyingNode, Backend], method: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    dying, live = nodes
    async with running_balancer(nodes=f"{dying.address},{live.address}", hc_interval=60.0) as lb:
        await wait_for(lambda: all(s == "online" for s in lb.peer.view.states.values()))
        assert len(lb.peer.view.states) == 2
        routed = lb.peer.candidates

        def candidates(key: str, path: str) -> Sequence[str]:
            # The second call is being routed: the node dies now, before fnlb looks in its
            # pool, with no turn of the loop in between to read the FIN.
            if dying.calls == 1 and not dying.dead:
                dying.die()
            return routed(key, path)

        monkeypatch.setattr(lb.peer, "candidates", candidates)
        # a function whose first candidate is the dying node, so both calls go there first
        path = next(
            f"/r/app/fn{i}"
            for i in range(100)
            if lb.peer.view.candidates(f"r/app/fn{i}")[0] == dying.address
        )
        address = lb.listen_address
        assert address is not None
        reader, writer = await asyncio.open_connection(address.host, address.port)
        request = b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody" % (
            method,
            path.encode(),
        )
        writer.write(request + request)  # pipelined: the second starts as the first ends
        async with asyncio.timeout(10):
            first = await read_answer(reader)
            second = await read_answer(reader)
        writer.close()
    assert first == (200, b"dying.")
    assert second[0] == 200, second[1]
    assert b'"node": "live"' in second[1] or b'"node":"live"' in second[1]
    assert dying.calls == 1
    assert [s.method for s in live.seen] == [method.decode()]
