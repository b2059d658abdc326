"""The primary's side of `-workers`, without processes: replaying a worker's attempts into
the load figures, and the in-flight figures each worker is sent."""

from __future__ import annotations

import socket

from fnlb.cluster.load import LocalLoad
from fnlb.cluster.registry import NodeRegistry
from fnlb.proxy.worker_link import RelayLoad
from fnlb.proxy.workers import WorkerPool
from fnlb.routing.router import Router


def pool(load: LocalLoad, sock: socket.socket, router: Router | None = None) -> WorkerPool:
    return WorkerPool(
        2,
        sock,
        registry=NodeRegistry(healthy=1, unhealthy=1, nodes=["a:1", "b:1"]),
        load=load,
        passive_failure=lambda node, why: None,
        router=router,
        share_backoff=None,
        options={},
    )


def test_a_workers_attempts_are_booked_as_if_made_here_and_freed_when_it_dies() -> None:
    load = LocalLoad()
    with socket.socket() as sock:
        p = pool(load, sock)
    relay = RelayLoad()
    relay.call_started("r/app/f", "a:1", 100.0)
    relay.call_started("r/app/f", "a:1", 100.1)
    relay.call_finished("r/app/f", "a:1", 200, 0.01, 0.02, 100.2, 100.2)
    w = p.workers[0]
    p._apply(w, ["load", relay.take()])
    assert load.in_flight("r/app/f", "a:1") == 1
    assert w.in_flight == {"a:1": 1}
    assert sum(c.calls for c in load.answers_per_second(101.0)) == 1  # in /1/lb/stats
    p._release(w)  # the worker died with one call under way
    assert load.in_flight("r/app/f", "a:1") == 0


def test_each_worker_is_sent_its_siblings_calls_in_flight() -> None:
    router = Router()
    router.update(peers_in_flight={"a:1": 5})
    with socket.socket() as sock:
        p = pool(LocalLoad(), sock, router)
        unrouted = pool(LocalLoad(), sock)
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
