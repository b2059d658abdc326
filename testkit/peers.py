"""Several fnlb peers gossiping in one process on loopback (tests and bench/k8s_watch)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fnlb.config import Settings
from fnlb.server import Balancer


async def wait_for(predicate: Callable[[], bool], within: float = 30.0) -> None:
    """Poll `predicate` until true; AssertionError after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {within} s")
        await asyncio.sleep(0.01)


def peer_settings(name: str, join: tuple[str, ...] = (), **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "mgmt_listen": "127.0.0.1:0",
        "gossip_listen": "127.0.0.1:0",
        "join": join,
        "node_name": name,
        "gossip_insecure": True,
        "hc_interval": 0.3,
        "hc_timeout": 1.0,
        "workers": 1,  # in-process peers: their own data plane, no worker processes
    }
    return Settings(**{**values, **extra})


def gossip_seed(b: Balancer) -> str:
    assert b.gossip is not None
    assert b.gossip.bound is not None
    return f"127.0.0.1:{b.gossip.bound[1]}"


@contextlib.asynccontextmanager
async def peers(count: int, **extra: Any) -> AsyncIterator[list[Balancer]]:
    started: list[Balancer] = []
    try:
        first = Balancer(peer_settings("p0", **extra))
        await first.start()
        started.append(first)
        for i in range(1, count):
            b = Balancer(peer_settings(f"p{i}", (gossip_seed(first),), **extra))
            await b.start()
            started.append(b)
        await wait_for(lambda: all(len(alive(b)) == count for b in started), within=15)
        yield started
    finally:
        for b in reversed(started):
            await b.stop()


def alive(b: Balancer) -> set[str]:
    assert b.cluster is not None
    return set(b.peer.state.alive)
