"""Acknowledged means kept: kill -9 the peer that answered 200, restart peers and the cluster."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support_proc import FnlbProcess, free_port


def request(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def nodes_of(p: FnlbProcess) -> set[str]:
    return set(request(p.mgmt_url("/1/lb/nodes"))[1]["nodes"])


def live_peers(p: FnlbProcess) -> int:
    _, report = request(p.mgmt_url("/1/lb/cluster"))
    return sum(peer["state"] == "alive" for peer in report["peers"])


def eventually(check: Any, within: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.1)


class Peers:
    """Three fnlb processes with state dirs and fixed gossip ports, restartable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gossip = [free_port() for _ in range(3)]
        self.procs: list[FnlbProcess | None] = [None, None, None]

    def start(self, i: int, *, join: bool = True) -> FnlbProcess:
        """Peer `i`; `join=False` leaves it only the peers saved in its state dir to join."""
        joins = [f"-join=127.0.0.1:{g}" for j, g in enumerate(self.gossip) if j != i and join]
        p = FnlbProcess(
            f"-gossip-listen=127.0.0.1:{self.gossip[i]}",
            f"-node-name=p{i}",
            f"-state-dir={self.root / f'p{i}'}",
            "-gossip-insecure",
            *joins,
        )
        self.procs[i] = p
        return p

    def proc(self, i: int) -> FnlbProcess:
        p = self.procs[i]
        assert p is not None
        return p

    def stop_all(self) -> None:
        for p in self.procs:
            if p is not None:
                p.stop()


@pytest.mark.slow
def test_a_change_acknowledged_then_kill_9_survives_and_restarts_restore(tmp_path: Path) -> None:
    peers = Peers(tmp_path)
    try:
        for i in range(3):
            peers.start(i)
        eventually(lambda: all(live_peers(peers.proc(i)) == 3 for i in range(3)))
        a = peers.proc(0)
        status, answer = request(a.mgmt_url("/1/lb/nodes"), "PUT", {"node": "10.9.9.9:8080"})
        assert status == 200
        assert answer["held_by"] >= 2
        a.signal(signal.SIGKILL)  # right after the 200
        a.wait(10)
        # The peer that held it answered before a did: it has it now, and gossip spreads it.
        eventually(lambda: all("10.9.9.9:8080" in nodes_of(peers.proc(i)) for i in (1, 2)))
        status, _ = request(peers.proc(1).mgmt_url("/1/lb/nodes"), "PUT", {"node": "10.9.9.8:1"})
        assert status == 200
        a.stop()
        a = peers.start(0)  # restarted from its state dir, rejoins, catches up
        eventually(lambda: nodes_of(a) == {"10.9.9.9:8080", "10.9.9.8:1"})
        peers.stop_all()  # the whole cluster goes down (kill -9) ...
        for i in range(3):
            peers.start(i)  # ... and comes back from its state dirs
        for i in range(3):
            assert nodes_of(peers.proc(i)) == {"10.9.9.9:8080", "10.9.9.8:1"}
    finally:
        peers.stop_all()


def alive_names(p: FnlbProcess) -> set[str]:
    _, answer = request(p.mgmt_url("/1/lb/peers"))
    return {peer["name"] for peer in answer["peers"] if peer["state"] == "alive"}


def saved_peers(root: Path, i: int) -> int:
    try:
        return len(json.loads((root / f"p{i}" / "state.json").read_text()).get("peers", []))
    except (OSError, ValueError):
        return 0


def test_a_peer_restarted_without_join_rejoins_the_peers_it_saved(tmp_path: Path) -> None:
    peers = Peers(tmp_path)
    try:
        for i in range(3):
            peers.start(i)
        eventually(lambda: all(live_peers(peers.proc(i)) == 3 for i in range(3)))
        # No node change yet: the peer must still have saved whom it joined.
        eventually(lambda: saved_peers(tmp_path, 2) == 2)
        peers.proc(2).signal(signal.SIGKILL)
        peers.proc(2).wait(10)
        status, _ = request(peers.proc(0).mgmt_url("/1/lb/nodes"), "PUT", {"node": "10.9.9.7:1"})
        assert status == 200  # made while p2 was down
        peers.proc(2).stop()
        back = peers.start(2, join=False)
        eventually(lambda: all("p2" in alive_names(peers.proc(i)) for i in (0, 1)))
        eventually(lambda: nodes_of(back) == {"10.9.9.7:1"})
    finally:
        peers.stop_all()
