"""Our toxiproxy on loopback: the HTTP API's shapes and what each toxic does to a connection.

These need no root and no namespaces (no `cluster` marker): they run with the ordinary suite.
When Shopify's `toxiproxy-server` is on PATH every test also runs against it, which keeps our
implementation and our client honest about the real API.

Times are only ever asserted as lower bounds (a 300 ms latency toxic makes a round trip take
at least 300 ms), which a slow, shared machine cannot break.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from harness.procs import child_env, python_argv
from harness.toxiproxy import serve_in_thread
from harness.toxiproxy_client import ToxiproxyClient, ToxiproxyError

SERVERS = ["ours"] + (["real"] if shutil.which("toxiproxy-server") else [])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def api_subprocess(argv: list[str], port: int) -> Iterator[ToxiproxyClient]:
    proc = subprocess.Popen(argv, env=child_env(), stderr=subprocess.DEVNULL)
    try:
        client = ToxiproxyClient.at(f"127.0.0.1:{port}")
        client.wait_ready()
        yield client
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(params=SERVERS)
def toxi(request: pytest.FixtureRequest) -> Iterator[ToxiproxyClient]:
    if request.param == "ours":
        with serve_in_thread(seed=1) as url:
            yield ToxiproxyClient.at(url.removeprefix("http://"))
    else:
        port = free_port()
        argv = ["toxiproxy-server", "-host", "127.0.0.1", "-port", str(port)]
        with api_subprocess(argv, port) as client:
            yield client


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(OSError):
            while data := self.request.recv(65536):
                self.request.sendall(data)


class _SendAndClose(socketserver.BaseRequestHandler):
    """Sends `payload` then closes at once (for slow_close and bandwidth)."""

    payload = b"bye"

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            self.request.sendall(self.payload)


class _Big(_SendAndClose):
    payload = b"x" * 25_000


@contextlib.contextmanager
def upstream(handler: type[socketserver.BaseRequestHandler]) -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def echo() -> Iterator[str]:
    with upstream(_Echo) as addr:
        yield addr


def connect(listen: str, timeout: float = 10.0) -> socket.socket:
    host, _, port = listen.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def round_trip(listen: str, payload: bytes = b"ping", timeout: float = 10.0) -> float:
    """Seconds for `payload` to go through the proxy to the echo server and back."""
    with connect(listen, timeout) as s:
        start = time.monotonic()
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            assert chunk, "connection closed before the echo came back"
            got += chunk
        assert got == payload
        return time.monotonic() - start


def read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


# -- the API ----------------------------------------------------------------------------


def test_a_created_proxy_is_listed_shown_and_forwards_bytes(
    toxi: ToxiproxyClient, echo: str
) -> None:
    made = toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    assert made.enabled
    assert made.upstream == echo
    assert made.port > 0
    assert set(toxi.proxies()) == {"fn1"}
    assert toxi.proxy("fn1") == made
    assert round_trip(made.listen) >= 0


def test_unknown_names_answer_404_and_duplicates_409(toxi: ToxiproxyClient, echo: str) -> None:
    toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    with pytest.raises(ToxiproxyError) as e:
        toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    assert e.value.status == 409
    with pytest.raises(ToxiproxyError) as e:
        toxi.proxy("nope")
    assert e.value.status == 404
    with pytest.raises(ToxiproxyError) as e:
        toxi.remove_toxic("fn1", "nope")
    assert e.value.status == 404
    toxi.add_toxic("fn1", "latency", {"latency": 1})
    with pytest.raises(ToxiproxyError) as e:
        toxi.add_toxic("fn1", "latency", {"latency": 1})
    assert e.value.status == 409


def test_bad_toxics_are_refused_with_400(toxi: ToxiproxyClient, echo: str) -> None:
    toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    for kind, attrs, stream in (
        ("no_such_toxic", {}, "downstream"),
        ("latency", {"latency": 1}, "sideways"),
    ):
        with pytest.raises(ToxiproxyError) as e:
            toxi.add_toxic("fn1", kind, attrs, stream=stream)
        assert e.value.status == 400


def test_a_toxic_gets_a_default_name_and_can_be_read_updated_and_removed(
    toxi: ToxiproxyClient, echo: str
) -> None:
    toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    toxic = toxi.add_toxic("fn1", "latency", {"latency": 100}, stream="upstream")
    assert (toxic.name, toxic.type, toxic.stream, toxic.toxicity) == (
        "latency_upstream",
        "latency",
        "upstream",
        1.0,
    )
    assert toxic.attributes["latency"] == 100
    assert toxi.toxic("fn1", "latency_upstream") == toxic
    assert toxi.proxy("fn1").toxics == (toxic,)
    updated = toxi.update_toxic("fn1", "latency_upstream", {"latency": 7}, toxicity=0.5)
    assert updated.attributes["latency"] == 7
    assert updated.toxicity == 0.5
    toxi.remove_toxic("fn1", "latency_upstream")
    assert toxi.toxics("fn1") == []


def test_reset_removes_every_toxic_and_enables_every_proxy(
    toxi: ToxiproxyClient, echo: str
) -> None:
    toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    toxi.create_proxy("fn2", "127.0.0.1:0", echo)
    toxi.add_toxic("fn1", "timeout", {"timeout": 0})
    toxi.update_proxy("fn2", enabled=False)
    toxi.reset()
    proxies = toxi.proxies()
    assert all(p.enabled and not p.toxics for p in proxies.values())
    assert round_trip(proxies["fn1"].listen) >= 0
    assert round_trip(proxies["fn2"].listen) >= 0


def test_a_deleted_proxy_stops_listening(toxi: ToxiproxyClient, echo: str) -> None:
    made = toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    toxi.delete_proxy("fn1")
    assert toxi.proxies() == {}
    with pytest.raises(ConnectionRefusedError):
        connect(made.listen).close()


# -- down -------------------------------------------------------------------------------


def test_down_refuses_new_connections_and_closes_open_ones(
    toxi: ToxiproxyClient, echo: str
) -> None:
    made = toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    with connect(made.listen) as open_conn:
        open_conn.sendall(b"x")
        assert open_conn.recv(10) == b"x"
        with toxi.down("fn1") as info:
            assert not info.enabled
            with pytest.raises(ConnectionRefusedError):
                connect(made.listen).close()
            with contextlib.suppress(ConnectionResetError):
                assert open_conn.recv(10) == b""
    assert toxi.proxy("fn1").enabled
    assert round_trip(made.listen) >= 0


# -- each toxic -------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_latency_delays_every_round_trip(toxi: ToxiproxyClient, echo: str, stream: str) -> None:
    made = toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    toxi.add_toxic("fn1", "latency", {"latency": 300, "jitter": 0}, stream=stream)
    assert round_trip(made.listen) >= 0.3
    assert round_trip(made.listen, b"again") >= 0.3


def test_latency_with_jitter_is_never_below_latency_minus_jitter(
    toxi: ToxiproxyClient, echo: str
) -> None:
    made = toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    toxi.add_toxic("fn1", "latency", {"latency": 300, "jitter": 100})
    assert min(round_trip(made.listen) for _ in range(3)) >= 0.2


def test_a_toxic_added_to_a_live_connection_applies_and_its_removal_lifts_it(
    toxi: ToxiproxyClient, echo: str
) -> None:
    made = toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    with connect(made.listen) as s:
        s.sendall(b"a")
        assert s.recv(10) == b"a"
        with toxi.toxic_applied("fn1", "latency", {"latency": 300}):
            start = time.monotonic()
            s.sendall(b"b")
            assert s.recv(10) == b"b"
            assert time.monotonic() - start >= 0.3
        s.sendall(b"c")
        assert s.recv(10) == b"c"


def test_toxicity_zero_never_applies(toxi: ToxiproxyClient, echo: str) -> None:
    made = toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    toxi.add_toxic("fn1", "timeout", {"timeout": 0}, toxicity=0.0)
    for _ in range(5):
        round_trip(made.listen, timeout=5.0)  # a held connection would time out here


def test_bandwidth_limits_the_rate_in_kilobytes_per_second(toxi: ToxiproxyClient) -> None:
    with upstream(_Big) as big:
        made = toxi.create_proxy("fn1", "127.0.0.1:0", big)
        toxi.add_toxic("fn1", "bandwidth", {"rate": 50})  # 50 KB/s: 25 KB take ~0.5 s
        with connect(made.listen) as s:
            start = time.monotonic()
            got = read_all(s)
            elapsed = time.monotonic() - start
    assert got == _Big.payload
    assert elapsed >= 0.4


def test_timeout_zero_holds_data_until_the_toxic_is_removed(
    toxi: ToxiproxyClient, echo: str
) -> None:
    made = toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    toxi.add_toxic("fn1", "timeout", {"timeout": 0})
    with connect(made.listen) as s:
        s.sendall(b"held")
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(10)
        toxi.remove_toxic("fn1", "timeout_downstream")
        s.settimeout(10)
        assert s.recv(10) == b"held"


def test_timeout_drops_data_and_closes_the_connection_after_its_time(
    toxi: ToxiproxyClient, echo: str
) -> None:
    made = toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    toxi.add_toxic("fn1", "timeout", {"timeout": 300})
    with connect(made.listen) as s:
        start = time.monotonic()
        s.sendall(b"lost")
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(10) == b"", "the data went through a timeout toxic"
        assert time.monotonic() - start >= 0.3


@pytest.mark.parametrize("after_ms", [0, 300])
def test_reset_peer_resets_the_connection_after_data(
    toxi: ToxiproxyClient, echo: str, after_ms: int
) -> None:
    made = toxi.create_proxy("fn1", "127.0.0.1:0", echo)
    toxi.add_toxic("fn1", "reset_peer", {"timeout": after_ms})
    with connect(made.listen) as s:
        start = time.monotonic()
        s.sendall(b"boom")
        with pytest.raises(ConnectionResetError):
            s.recv(10)
        assert time.monotonic() - start >= after_ms / 1000


def test_slow_close_delays_the_end_of_the_stream(toxi: ToxiproxyClient) -> None:
    with upstream(_SendAndClose) as closer:
        made = toxi.create_proxy("fn1", "127.0.0.1:0", closer)
        toxi.add_toxic("fn1", "slow_close", {"delay": 400})
        with connect(made.listen) as s:
            start = time.monotonic()
            assert read_all(s) == b"bye"
            assert time.monotonic() - start >= 0.4


# -- the command ------------------------------------------------------------------------


def test_the_module_runs_as_a_server_with_toxiproxy_servers_flags(echo: str) -> None:
    port = free_port()
    argv = python_argv("harness.toxiproxy", "-host", "127.0.0.1", "-port", str(port))
    with api_subprocess(argv, port) as client:
        assert client.version()
        made = client.create_proxy("fn1", "127.0.0.1:0", echo)
        assert round_trip(made.listen) >= 0
