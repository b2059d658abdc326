"""What fnlb sends both ways, read by an independent HTTP/1.1 parser (h11) on each side.

The client and the node here are raw sockets driven by h11, not aiohttp: a framing mistake
(a Content-Length that does not match, a chunk boundary off by one, a response left open)
that an aiohttp peer might forgive is a protocol error here. Every test runs on both data
planes (tests/proxy/conftest.py); the few behaviours only the fast plane promises say so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import h11
import pytest

from fnlb.server import Balancer
from tests.support import LoopbackNode, running_balancer, wait_for


@dataclass
class Got:
    """One request as the node parsed it."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    port: int = 0

    def header(self, name: bytes) -> bytes | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return b", ".join(values) if values else None


Answer = Callable[[Got], tuple[h11.Response, list[bytes]]]


def plain(got: Got) -> tuple[h11.Response, list[bytes]]:
    body = b'{"ok":true}'
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    return h11.Response(status_code=200, headers=headers), [body]


@dataclass
class H11Node(LoopbackNode):
    """An Fn node stand-in whose HTTP is h11's: records each request, answers via `answer`."""

    answer: Answer = plain
    got: list[Got] = field(default_factory=list)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=256 * 1024)
        port = writer.get_extra_info("peername")[1]
        try:
            while True:
                got: Got | None = None
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(65536)
                        conn.receive_data(data)
                        if not data and conn.their_state is h11.CLOSED:
                            return
                        continue
                    if isinstance(event, h11.Request):
                        got = Got(event.method, event.target, list(event.headers), port=port)
                    elif isinstance(event, h11.Data):
                        assert got is not None
                        got.body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                assert got is not None
                if got.target == b"/metrics":  # health checks read it; not a call
                    response = h11.Response(status_code=404, headers=[("Content-Length", "0")])
                    chunks = []
                elif got.target == b"/version":
                    body = b'{"version":"0.3.750"}'
                    response = h11.Response(
                        status_code=200, headers=[("Content-Length", str(len(body)))]
                    )
                    chunks = [body]
                else:
                    self.got.append(got)
                    response, chunks = self.answer(got)
                out = conn.send(response) or b""
                for c in chunks:
                    out += conn.send(h11.Data(data=c)) or b""
                out += conn.send(h11.EndOfMessage()) or b""
                writer.write(out)
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.RemoteProtocolError):
            return
        finally:
            writer.close()


class H11Client:
    """A client connection whose HTTP is h11's; `call` sends one request, returns the answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=256 * 1024)

    @classmethod
    async def open(cls, lb: Balancer) -> H11Client:
        address = lb.listen_address
        assert address is not None
        reader, writer = await asyncio.open_connection(address.host, address.port)
        return cls(reader, writer)

    async def next_event(self) -> h11.Event:
        async with asyncio.timeout(5):
            while True:
                event = self.conn.next_event()
                if isinstance(event, h11.Event):
                    return event
                assert event is h11.NEED_DATA, event  # never PAUSED: each cycle is restarted
                self.conn.receive_data(await self.reader.read(65536))

    async def send(self, *events: h11.Event) -> None:
        for e in events:
            self.writer.write(self.conn.send(e) or b"")
        await self.writer.drain()

    async def answer(self) -> tuple[h11.Response, bytes]:
        """The next final response and its whole body (interim responses are skipped)."""
        event = await self.next_event()
        while isinstance(event, h11.InformationalResponse):
            event = await self.next_event()
        assert isinstance(event, h11.Response), event
        body = b""
        while not isinstance(nxt := await self.next_event(), h11.EndOfMessage):
            assert isinstance(nxt, h11.Data), nxt
            body += nxt.data
        return event, body

    async def call(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None = None
    ) -> tuple[h11.Response, bytes]:
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        headers = [("Host", "fnlb.test"), *headers]
        if body is not None and not any(k.lower() == "transfer-encoding" for k, _ in headers):
            headers.append(("Content-Length", str(len(body))))
        events: list[h11.Event] = [h11.Request(method=method, target=target, headers=headers)]
        if body:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        await self.send(*events)
        return await self.answer()

    async def close(self) -> None:
        self.writer.close()


def header(response: h11.Response, name: bytes) -> bytes | None:
    values = [v for k, v in response.headers if k == name.lower()]
    return b", ".join(values) if values else None


@pytest.fixture
async def node() -> AsyncIterator[H11Node]:
    n = H11Node()
    await n.start()
    yield n
    await n.stop()


@pytest.fixture
async def lb(node: H11Node) -> AsyncIterator[Balancer]:
    async with running_balancer(nodes=node.address) as balancer:
        await wait_for(lambda: balancer.peer.view.states.get(node.address) == "online")
        yield balancer


@pytest.fixture
async def client(lb: Balancer) -> AsyncIterator[H11Client]:
    c = await H11Client.open(lb)
    yield c
    await c.close()


async def test_request_headers_hop_by_hop_removed_end_to_end_kept_forwarded_added(
    node: H11Node, client: H11Client
) -> None:
    response, body = await client.call(
        "POST",
        "/r/app/fn?q=%20x",
        [
            ("Connection", "keep-alive, X-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("X-Hop", "secret"),
            ("TE", "trailers"),
            ("Trailer", "X-T"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic eA=="),
            ("Proxy-Connection", "keep-alive"),
            ("X-Forwarded-For", "203.0.113.9"),
            ("Fn-Call-Id", "c1"),
            ("X-Twice", "a"),
            ("X-Twice", "b"),
        ],
        b"hello",
    )
    assert response.status_code == 200
    assert body == b'{"ok":true}'
    got = node.got[-1]
    assert (got.method, got.target, got.body) == (b"POST", b"/r/app/fn?q=%20x", b"hello")
    names = [k for k, _ in got.headers]
    for hop in (b"connection", b"keep-alive", b"x-hop", b"te", b"trailer", b"upgrade"):
        assert hop not in names, hop
    assert b"proxy-authorization" not in names
    assert b"proxy-connection" not in names
    assert got.header(b"fn-call-id") == b"c1"
    assert [v for k, v in got.headers if k == b"x-twice"] == [b"a", b"b"]
    assert got.header(b"content-length") == b"5"
    assert got.header(b"host") == b"fnlb.test"
    assert got.header(b"x-forwarded-for") == b"203.0.113.9, 127.0.0.1"
    assert got.header(b"x-forwarded-proto") == b"http"
    assert got.header(b"x-forwarded-host") == b"fnlb.test"


async def test_a_chunked_request_body_reaches_the_node_whole_and_well_framed(
    node: H11Node, client: H11Client
) -> None:
    await client.send(
        h11.Request(
            method="PUT",
            target="/r/app/up",
            headers=[("Host", "fnlb.test"), ("Transfer-Encoding", "chunked")],
        ),
        h11.Data(data=b"first,"),
        h11.Data(data=b"x" * 70_000),
        h11.Data(data=b",last"),
        h11.EndOfMessage(),
    )
    response, _ = await client.answer()
    assert response.status_code == 200
    got = node.got[-1]
    assert got.body == b"first," + b"x" * 70_000 + b",last"
    assert got.header(b"content-length") is None  # h11 checked the chunked framing


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
async def test_answers_keep_their_body_whatever_the_node_framing(
    node: H11Node, client: H11Client, framing: str
) -> None:
    body = [b"part one;", b"part two;" * 1000]

    def answer(got: Got) -> tuple[h11.Response, list[bytes]]:
        headers = [
            ("X-End", "kept"),
            ("Connection", "X-Node-Hop" if framing != "close" else "close, X-Node-Hop"),
            ("X-Node-Hop", "dropped"),
            ("Keep-Alive", "timeout=9"),
            ("Proxy-Authenticate", "Basic"),
        ]
        if framing == "length":
            headers.append(("Content-Length", str(sum(map(len, body)))))
        elif framing == "chunked":
            headers.append(("Transfer-Encoding", "chunked"))
        return h11.Response(status_code=201, headers=headers, reason=b"Made"), body

    node.answer = answer
    for _ in range(2):  # and the client connection is still good after each answer
        response, got = await client.call("GET", "/r/app/fn", [])
        assert response.status_code == 201
        assert got == b"".join(body)
        assert header(response, b"x-end") == b"kept"
        for hop in (b"x-node-hop", b"keep-alive", b"proxy-authenticate"):
            assert header(response, hop) is None


async def test_keep_alive_both_sides(node: H11Node, client: H11Client) -> None:
    for i in range(6):
        response, _ = await client.call("GET", f"/r/app/fn?i={i}", [])
        assert response.status_code == 200
        assert header(response, b"connection") is None  # HTTP/1.1: open unless said
    assert len(node.got) == 6
    assert len({g.port for g in node.got}) == 1  # one pooled connection to the node


async def test_expect_100_continue_then_body(node: H11Node, client: H11Client) -> None:
    await client.send(
        h11.Request(
            method="POST",
            target="/r/app/fn",
            headers=[("Host", "fnlb.test"), ("Expect", "100-continue"), ("Content-Length", "4")],
        )
    )
    interim = await client.next_event()
    assert isinstance(interim, h11.InformationalResponse)
    assert interim.status_code == 100
    await client.send(h11.Data(data=b"body"), h11.EndOfMessage())
    response, _ = await client.answer()
    assert response.status_code == 200
    assert node.got[-1].body == b"body"
    assert node.got[-1].header(b"expect") is None


async def test_pipelined_requests_are_answered_in_order(lb: Balancer, node: H11Node) -> None:
    address = lb.listen_address
    assert address is not None
    reader, writer = await asyncio.open_connection(address.host, address.port)
    try:
        writer.write(
            b"POST /r/app/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nonePOST /r/app/b HTT"
        )
        writer.write(b"P/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwoGET /r/app/c HTTP/1.1\r\n")
        writer.write(b"Host: x\r\n\r\n")
        await writer.drain()
        conn = h11.Connection(h11.CLIENT)
        for _ in range(3):  # h11 follows the answers (the requests went as raw bytes)
            conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            conn.send(h11.EndOfMessage())
            events: list[h11.Event] = []
            async with asyncio.timeout(5):
                while not events or not isinstance(events[-1], h11.EndOfMessage):
                    event = conn.next_event()
                    if isinstance(event, h11.Event):
                        events.append(event)
                    else:
                        conn.receive_data(await reader.read(65536))
            assert isinstance(events[0], h11.Response)
            assert events[0].status_code == 200
            conn.start_next_cycle()
    finally:
        writer.close()
    assert [(g.target, g.body) for g in node.got] == [
        (b"/r/app/a", b"one"),
        (b"/r/app/b", b"two"),
        (b"/r/app/c", b""),
    ]


async def test_head_answer_has_no_body_and_the_connection_goes_on(
    node: H11Node, client: H11Client
) -> None:
    def answer(got: Got) -> tuple[h11.Response, list[bytes]]:
        return h11.Response(status_code=200, headers=[("Content-Length", "1234")]), []

    node.answer = answer
    await client.send(
        h11.Request(method="HEAD", target="/r/app/fn", headers=[("Host", "fnlb.test")]),
        h11.EndOfMessage(),
    )
    response, body = await client.answer()
    assert (response.status_code, body) == (200, b"")
    assert header(response, b"content-length") == b"1234"
    node.answer = plain
    response, body = await client.call("GET", "/r/app/fn", [])
    assert (response.status_code, body) == (200, b'{"ok":true}')


async def test_a_60_kib_header_passes_both_ways(node: H11Node, client: H11Client) -> None:
    token = "t" * (60 * 1024)

    def answer(got: Got) -> tuple[h11.Response, list[bytes]]:
        return h11.Response(
            status_code=200, headers=[("X-Back", token), ("Content-Length", "0")]
        ), []

    node.answer = answer
    response, _ = await client.call("GET", "/r/app/fn", [("X-Token", token)])
    assert response.status_code == 200
    assert header(response, b"x-back") == token.encode()
    assert node.got[-1].header(b"x-token") == token.encode()


async def test_a_request_the_parser_refuses_gets_a_json_400_and_reaches_no_node(
    lb: Balancer, node: H11Node, data_plane: str
) -> None:
    if data_plane == "aiohttp":
        pytest.skip("aiohttp's server answers a malformed request in text/plain")
    address = lb.listen_address
    assert address is not None
    reader, writer = await asyncio.open_connection(address.host, address.port)
    try:
        writer.write(b"GET /r/app/fn HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            raw = await reader.read()  # the connection is closed after the answer
    finally:
        writer.close()
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    conn.receive_data(b"")
    response = conn.next_event()
    assert isinstance(response, h11.Response)
    assert response.status_code == 400
    assert header(response, b"content-type") == b"application/json; charset=utf-8"
    data = conn.next_event()
    assert isinstance(data, h11.Data)
    assert "msg" in json.loads(data.data)
    assert node.got == []


async def test_an_oversized_header_is_refused_with_431(
    lb: Balancer, node: H11Node, data_plane: str
) -> None:
    if data_plane == "aiohttp":
        pytest.skip("aiohttp's server answers 400 in text/plain")
    address = lb.listen_address
    assert address is not None
    reader, writer = await asyncio.open_connection(address.host, address.port)
    try:
        writer.write(b"GET /r/app/fn HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            raw = await reader.read()
    finally:
        writer.close()
    assert raw.startswith(b"HTTP/1.1 431 ")
    assert b'{"msg":' in raw
    assert node.got == []


async def test_shared_port_carries_calls_and_the_api_on_one_connection_either_order(
    node: H11Node, unused_tcp_port: int
) -> None:
    port = f"127.0.0.1:{unused_tcp_port}"
    async with running_balancer(nodes=node.address, listen=port, mgmt_listen=port) as lb:
        await wait_for(lambda: lb.peer.view.states.get(node.address) == "online")
        for first_api in (True, False):
            c = await H11Client.open(lb)
            try:
                for api in (first_api, not first_api, first_api):
                    target = "/1/lb/nodes" if api else "/r/app/fn"
                    response, body = await c.call("GET", target, [])
                    assert response.status_code == 200
                    if api:
                        assert json.loads(body)["nodes"] == {node.address: "online"}
                    else:
                        assert body == b'{"ok":true}'
            finally:
                await c.close()
    assert len(node.got) == 3


async def test_a_get_asking_to_upgrade_is_proxied_as_plain_http(
    node: H11Node, client: H11Client
) -> None:
    # What curl sends for --http2 over plain http: Upgrade is hop-by-hop, so the node gets
    # a plain HTTP/1.1 request, the client a plain answer (no 101), and the connection goes on.
    headers = [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
               ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")]  # fmt: skip
    for _ in range(2):
        response, body = await client.call("GET", "/r/app/fn", headers)
        assert (response.status_code, body) == (200, b'{"ok":true}')
    names = [k for k, _ in node.got[-1].headers]
    for hop in (b"connection", b"upgrade", b"http2-settings"):
        assert hop not in names
    assert len(node.got) == 2


async def test_a_fault_inside_fnlb_is_a_json_502_not_a_hang(
    lb: Balancer, node: H11Node, client: H11Client, data_plane: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if data_plane == "aiohttp":
        pytest.skip("the fast plane's own guard")
    assert lb.fast is not None

    def broken(*args: object) -> list[str]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(lb.fast.peer, "candidates", broken)
    response, body = await client.call("GET", "/r/app/fn", [])
    assert response.status_code == 502
    assert "logged" in json.loads(body)["msg"]
    assert node.got == []


async def test_an_api_request_pipelined_behind_a_call_on_the_shared_port_is_not_proxied(
    node: H11Node, unused_tcp_port: int, data_plane: str
) -> None:
    port = f"127.0.0.1:{unused_tcp_port}"
    async with running_balancer(nodes=node.address, listen=port, mgmt_listen=port) as lb:
        await wait_for(lambda: lb.peer.view.states.get(node.address) == "online")
        reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
        try:  # both requests in one write: the API one is read with the call, not sniffed
            writer.write(
                b"GET /r/app/fn HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /1/lb/nodes HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            await writer.drain()
            parser = h11.Connection(h11.CLIENT)  # reads the two answers in order
            answers: list[tuple[int, bytes]] = []
            async with asyncio.timeout(10):
                for _ in range(2):
                    if answers:
                        parser.start_next_cycle()
                    parser.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
                    parser.send(h11.EndOfMessage())
                    status, body = 0, b""
                    while True:
                        event = parser.next_event()
                        if event is h11.NEED_DATA:
                            parser.receive_data(await reader.read(65536))
                        elif isinstance(event, h11.Response):
                            status = event.status_code
                        elif isinstance(event, h11.Data):
                            body += bytes(event.data)
                        elif isinstance(event, h11.EndOfMessage):
                            answers.append((status, body))
                            break
        finally:
            writer.close()
    assert answers[0] == (200, b'{"ok":true}')
    if data_plane == "aiohttp":  # one app serves both: it answers the API request
        assert answers[1][0] == 200
        assert json.loads(answers[1][1])["nodes"] == {node.address: "online"}
    else:
        assert answers[1][0] == 400
        assert "pipelined" in json.loads(answers[1][1])["msg"]
    assert len(node.got) == 1  # never sent to the Fn node
