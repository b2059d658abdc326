"""The primary's side of `-workers`, without processes: a worker's attempts replayed into the
primary's Peer, its failed connections, the routing figures and back-off each worker is sent;
and the worker's stand-in for the Peer."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from pathlib import Path
from typing import cast

import msgpack
import pytest

from fnlb.cluster.view import NodeView
from fnlb.payloads.backoff import decode_entries
from fnlb.peer.core import LONE_NAME, Peer
from fnlb.proxy.worker import WorkerPeer
from fnlb.proxy.worker_link import AttemptRelay, attempt_of
from fnlb.proxy.workers import WorkerPool, quota_cpus
from fnlb.routing.attempt import BUSY, NO_ANSWER, Attempt
from fnlb.routing.policies import make_policy

NODES = ("a:1", "b:1")


def peer(routing: str = "rendezvous") -> Peer:
    p = Peer(
        LONE_NAME,
        routing=make_policy(routing, random.Random(1), time.time),
        clock_ms=lambda: 1_000,
        healthy=1,
        unhealthy=1,
        gossip=False,
        seed=NODES,
    )
    for node in NODES:
        p.health_checked(node, True, 1_000)
    return p


def pool(p: Peer, sock: socket.socket) -> WorkerPool:
    return WorkerPool(2, sock, peer=p, options={})


def test_an_attempt_record_survives_the_link_field_for_field() -> None:
    relay = AttemptRelay()
    sent = Attempt("r/app/f", "a:1", "/r/app/f", 503, 100.5, 0.25, 15.0, 0.01, 100.4)
    relay.finished(sent)
    (event,) = relay.take()
    got = attempt_of(event)
    # A class compiled by mypyc (docs/proxy.md) lists its fields in __mypyc_attrs__ and has
    # no __slots__; the interpreted one has only __slots__.
    fields: tuple[str, ...] = getattr(Attempt, "__mypyc_attrs__", None) or Attempt.__slots__
    assert len(fields) == 9
    assert [getattr(got, f) for f in fields] == [getattr(sent, f) for f in fields]
    assert relay.take() == []


def test_a_workers_attempts_are_booked_by_the_primarys_peer_and_freed_when_it_dies() -> None:
    primary = peer()
    with socket.socket() as sock:
        p = pool(primary, sock)
    relay = AttemptRelay()
    relay.started("r/app/f", "a:1", 100.0)
    relay.started("r/app/f", "a:1", 100.1)
    relay.finished(Attempt("r/app/f", "a:1", "/r/app/f", 200, 100.2, 0.01, None, 0.02, 100.2))
    w = p.workers[0]
    p._apply(w, ["attempts", relay.take()])
    local = primary.local
    assert local.in_flight("r/app/f", "a:1") == 1
    assert w.in_flight == {"a:1": 1}
    assert sum(c.calls for c in local.answers_per_second(101.0)) == 1  # in /1/lb/stats
    p._release(w)  # the worker died with one call under way
    assert local.in_flight("r/app/f", "a:1") == 0
    assert sum(c.calls for c in local.answers_per_second(101.0)) == 1  # no answer: not a call


def test_a_workers_failed_connection_reaches_the_peer_as_a_failed_check() -> None:
    primary = peer()
    primary.take_checks()
    with socket.socket() as sock:
        p = pool(primary, sock)
    p._apply(p.workers[0], ["fail", "b:1", "connection refused", 2_000])
    health = primary.health("b:1")
    assert health is not None
    assert health.state == "offline"
    assert [c.node for c in primary.take_checks()] == ["b:1"]  # confirmed at once
    assert primary.view.routable == ("a:1",)


def test_the_primarys_router_learns_back_off_from_replayed_busy_attempts() -> None:
    primary = peer("hotset")
    with socket.socket() as sock:
        p = pool(primary, sock)
    now = time.time()
    relay = AttemptRelay()
    relay.started("r/app/f", "a:1", now)
    relay.finished(Attempt("r/app/f", "a:1", "/r/app/f", BUSY, now, None, 15.0))
    p._apply(p.workers[0], ["attempts", relay.take()])
    (message,) = p.backoff_news(now)  # what every worker is sent at the next tick
    (entry,) = decode_entries(message)
    assert (entry.fn, entry.node) == ("r/app/f", "a:1")
    assert p.backoff_news(now) == []  # sent once


def test_each_worker_is_sent_its_siblings_calls_in_flight() -> None:
    primary = peer("hotset")
    router = primary.routing.load_router
    assert router is not None
    router.update(peers_in_flight={"a:1": 5})
    with socket.socket() as sock:
        p = pool(primary, sock)
        unrouted = pool(peer(), sock)
    first, second = p.workers
    first.in_flight = {"a:1": 2, "b:1": 1}
    second.in_flight = {"b:1": 4}
    figures = p.figures_for(first)
    assert figures is not None
    assert figures[2] == {"a:1": 5, "b:1": 4}
    figures = p.figures_for(second)
    assert figures is not None
    assert figures[2] == {"a:1": 7, "b:1": 1}
    assert unrouted.figures_for(first) is None


def test_a_worker_routes_with_the_primarys_homes_and_admissions_tail() -> None:
    """Admission (issue 16) lives in the figures: a worker that lacked the tail sent the
    tail's functions to every node, where they evicted the protected set."""
    from fnlb.proxy.worker import Worker

    primary = peer("hotset")
    router = primary.routing.load_router
    assert router is not None
    router.update(homes={"r/app/hot": "a:1"}, tail=("b:1",))
    with socket.socket() as sock:
        p = pool(primary, sock)
        worker = Worker({"routing": "hotset", "log_level": "error"}, sock)
    figures = p.figures_for(p.workers[0])
    assert figures is not None
    worker.apply(["view", 3, {"a:1": "online", "b:1": "online", "c:1": "online"}])
    worker.apply(figures)
    assert worker.router is not None
    assert worker.router.shared.homes == {"r/app/hot": "a:1"}
    assert worker.router.shared.tail == ("b:1",)
    tail_fns = [f"r/app/f{i}" for i in range(20)]
    assert {next(iter(worker.peer.candidates(f, "/" + f))) for f in tail_fns} == {"b:1"}


def test_the_pool_tells_when_every_worker_has_been_sent_the_placed_homes() -> None:
    """Homes placed by the primary reach the workers at the pool's next tick; until then a
    worker routes on the ones before (`fnlb demo` waits for this before its second burst)."""
    primary = peer("hotset")
    router = primary.routing.load_router
    assert router is not None
    with socket.socket() as sock:
        p = pool(primary, sock)
    router.update(homes={"r/app/hot": "a:1"})
    assert not p.sent_homes({"r/app/hot": "a:1"})
    for w in p.workers:
        p._send_figures(w)
    assert p.sent_homes({"r/app/hot": "a:1"})
    router.update(homes={"r/app/hot": "b:1"})
    assert not p.sent_homes(router.shared.homes)


def test_the_worker_peer_routes_on_the_primarys_view_and_relays_what_it_is_told() -> None:
    sent: list[list[object]] = []
    wp = WorkerPeer(make_policy("classic", random.Random(1), time.time), sent.append)
    assert list(wp.candidates("r/app/f", "/r/app/f")) == []  # no view yet
    wp.view = NodeView(3, {"a:1": "online", "b:1": "offline"})
    assert list(wp.candidates("r/app/f", "/r/app/f")) == ["a:1"]
    wp.attempt_started("r/app/f", "a:1", 10.0)
    wp.attempt_finished(Attempt("r/app/f", "a:1", "/r/app/f", NO_ANSWER, 10.1))
    wp.connect_failed("a:1", "refused", 10_100)
    events = wp.relay.take()
    assert [e[0] for e in events] == [0, 1]
    assert attempt_of(events[1]).status == NO_ANSWER
    assert sent == [["fail", "a:1", "refused", 10_100]]


class _Link:
    """A worker's end of the link, as the pool writes to it."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def is_closing(self) -> bool:
        return False


def test_a_new_view_reaches_every_worker_in_the_same_loop_turn_once() -> None:
    primary = peer()
    with socket.socket() as sock:
        p = pool(primary, sock)
    links = [_Link(), _Link()]
    for w, link in zip(p.workers, links, strict=True):
        w.writer = cast(asyncio.StreamWriter, link)
    primary.state.on_change = p.view_changed  # as WorkerPool.start does
    rebuilt: list[int] = []
    original = primary.state._rebuild_view

    def counting_rebuild() -> None:
        rebuilt.append(1)
        original()

    primary.state._rebuild_view = counting_rebuild  # type: ignore[method-assign]

    async def changes() -> None:
        primary.health_checked("b:1", False, 2_000)  # b:1 goes offline: a new view
        primary.health_checked("a:1", False, 2_000)  # and a:1, in the same loop turn
        primary.health_checked("a:1", True, 2_100)
        assert rebuilt == []  # the state only said "changed"; nothing built yet
        await asyncio.sleep(0)  # the end of this loop turn
        assert len(rebuilt) == 1  # three changes, one view built and sent
        primary.state.limit_view(None)  # a new version, the same states: nothing to send
        await asyncio.sleep(0)

    asyncio.run(changes())
    for link in links:
        (message,) = [msgpack.unpackb(f[4:]) for f in link.frames]
        assert message[0] == "view"
        assert message[2] == {"a:1": "online", "b:1": "offline"}


def test_a_cgroup_cpu_quota_caps_the_default_workers() -> None:
    assert quota_cpus("max 100000\n") is None  # cgroup v2, no limit
    assert quota_cpus("200000 100000\n") == 2  # --cpus=2
    assert quota_cpus("150000 100000") == 2  # 1.5 CPUs: rounded up
    assert quota_cpus("50000 100000") == 1  # half a CPU: still one process
    assert quota_cpus("-1 100000") is None  # cgroup v1, no limit
    assert quota_cpus("") is None
    assert quota_cpus(" ") is None  # v1 files missing
    assert quota_cpus("junk 1") is None


async def test_a_worker_that_cannot_start_fails_the_pools_start(tmp_path: Path) -> None:
    """A real worker process whose TLS files do not load exits before it listens: the pool
    says so instead of serving with fewer workers than asked."""
    from fnlb.proxy.workers import WorkerStartError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        p = WorkerPool(
            1,
            sock,
            peer=peer(),
            options={
                "routing": "rendezvous",
                "log_level": "error",
                "tls_cert": str(tmp_path / "missing.crt"),
                "tls_key": str(tmp_path / "missing.key"),
            },
        )
        with pytest.raises(WorkerStartError, match="exited before it listened"):
            async with asyncio.timeout(60):  # bounds a hang only; it exits at once
                await p.start()
        await p.stop(5)


def test_fnlb_serve_exits_1_with_one_line_when_a_worker_cannot_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fnlb import server
    from fnlb.cli import main
    from fnlb.proxy.workers import WorkerStartError

    async def failing(settings: object) -> int:
        raise WorkerStartError("a worker exited before it listened (see its log above)")

    monkeypatch.setattr(server, "serve", failing)
    code = main(["serve", "-listen", "127.0.0.1:0", "-mgmt-listen", "127.0.0.1:0"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == "fnlb: a worker exited before it listened (see its log above)\n"
