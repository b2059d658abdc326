"""The harness itself, in real namespaces: hosts, each fault, process signals, cleanup.

If these fail, no scenario's verdict can be trusted; they run first (alphabetical order is
not relied on: each is independent). Needs root, iproute2 and nftables (`cluster` marker).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness.netns import Host, Network, our_namespaces, sweep_stale
from harness.procs import python_argv

pytestmark = pytest.mark.cluster

HTTP_PORT = 8000
UDP_PORT = 8946


def http_server(host: Host) -> None:
    argv = python_argv("http.server", "--bind", host.address, str(HTTP_PORT))
    host.spawn(argv, name="http")
    host.wait_http(host.addr(HTTP_PORT))


def reaches(src: Host, dst: Host, timeout: float = 1.0) -> bool:
    try:
        return src.http("GET", dst.addr(HTTP_PORT), "/", timeout=timeout).status == 200
    except OSError:
        return False


def udp_delivered(src: Host, dst: Host, count: int, port: int = UDP_PORT) -> int:
    """Send `count` datagrams from src to dst:port; how many arrived."""
    receiver = dst.run(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sender = src.run(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    with receiver, sender:
        receiver.bind((dst.address, port))
        receiver.settimeout(0.5)
        for i in range(count):
            sender.sendto(str(i).encode(), (dst.address, port))
            if i % 50 == 49:
                time.sleep(0.01)  # stay well inside the socket's receive buffer
        got = 0
        with contextlib.suppress(TimeoutError):
            while True:
                receiver.recv(64)
                got += 1
        return got


def test_hosts_talk_over_a_subnet_that_exists_only_in_their_namespaces(
    network: Network,
) -> None:
    a, b = network.add_hosts("a", "b")
    http_server(a)
    assert reaches(b, a)
    assert a.address != b.address
    root_addrs = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    assert network.subnet + "." not in root_addrs
    root_links = subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert "v-a" not in root_links


@pytest.mark.usefixtures("netns_available")
def test_leaving_the_network_deletes_every_namespace_and_process() -> None:
    with Network() as net:
        a = net.add_host("a")
        http_server(a)
        proc = a.processes[0]
        assert len(our_namespaces()) == 2
    assert our_namespaces() == []
    assert not proc.alive()


@pytest.mark.usefixtures("netns_available")
def test_stale_namespaces_of_dead_runs_are_swept() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"fnlbct-{dead.pid}-1-x"
    logs = Path(tempfile.mkdtemp(prefix=f"fnlbct-{dead.pid}-1-"))
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in sweep_stale()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert stale not in listed
        assert not logs.exists()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)
        shutil.rmtree(logs, ignore_errors=True)


def test_a_partition_cuts_both_ways_and_heals(network: Network) -> None:
    a, b, c = network.add_hosts("a", "b", "c")
    for h in (a, b, c):
        http_server(h)
    with network.partition([a], [b, c]):
        assert not reaches(a, b)
        assert not reaches(b, a)
        assert not reaches(c, a)
        assert reaches(b, c)
    assert reaches(a, b)
    assert reaches(c, a)


def test_a_one_way_cut_drops_one_direction_only(network: Network) -> None:
    a, b = network.add_hosts("a", "b")
    with network.one_way(a, b):
        assert udp_delivered(a, b, 20) == 0
        assert udp_delivered(b, a, 20) == 20
    assert udp_delivered(a, b, 20) == 20


def test_a_black_hole_isolates_a_host_but_not_from_itself(network: Network) -> None:
    a, b = network.add_hosts("a", "b")
    http_server(a)
    with network.blackhole(a):
        assert not reaches(b, a)
        assert reaches(a, a)
    assert reaches(b, a)


def test_loss_drops_about_its_share_of_the_matching_packets_only(network: Network) -> None:
    a, b = network.add_hosts("a", "b")
    with network.loss(b, 50, proto="udp", port=UDP_PORT, direction="in"):
        got = udp_delivered(a, b, 400)
        # Binomial(400, 0.5): mean 200, sd 10; 120..280 is eight sd either way.
        assert 120 <= got <= 280
        assert udp_delivered(a, b, 50, port=UDP_PORT + 1) == 50
    with network.loss(b, 100, proto="tcp"):
        assert udp_delivered(a, b, 50) == 50
    network.heal()
    assert udp_delivered(a, b, 50) == 50


def test_heal_lifts_every_fault(network: Network) -> None:
    a, b, c = network.add_hosts("a", "b", "c")
    http_server(a)
    network.partition([a], [b])
    network.blackhole(c)
    network.loss(a, 100)
    network.heal()
    assert reaches(b, a)
    assert reaches(c, a)
    assert network.faults == []


def test_bandwidth_limits_a_tcp_transfer(network: Network) -> None:
    a, b = network.add_hosts("a", "b")
    payload = b"x" * 100_000  # 800 kbit: at 400 kbit/s about 2 s

    def serve() -> socket.socket:
        s = socket.socket()
        s.bind((a.address, 9000))
        s.listen()
        return s

    server = a.run(serve)

    def receive() -> None:
        conn, _ = server.accept()
        with conn:
            while conn.recv(65536):
                pass

    def send() -> float:
        with socket.create_connection((a.address, 9000), timeout=30) as s:
            start = time.monotonic()
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            s.recv(1)  # the receiver closes once it has everything
            return time.monotonic() - start

    with server, network.bandwidth(b, 400):
        t = threading.Thread(target=receive)
        t.start()
        elapsed = b.run(send)
        t.join(30)
    assert elapsed >= 1.5


def _wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_process_signals_stop_cont_kill_and_restart(network: Network) -> None:
    a, b = network.add_hosts("a", "b")
    http_server(a)
    proc = a.processes[0]
    proc.stop()
    assert not reaches(b, a, timeout=0.5)
    proc.cont()
    assert reaches(b, a, timeout=5)
    proc.kill9()
    assert proc.returncode == -9
    assert not reaches(b, a)
    again = a.adopt(proc.restarted())
    assert _wait_for(lambda: reaches(b, a))
    assert again.pid != proc.pid
    assert again.terminate() == -15
    assert not again.alive()
    assert "Serving HTTP" in again.log_text()
