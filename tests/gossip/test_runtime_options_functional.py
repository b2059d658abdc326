"""The runtime's start-up options on loopback: default port, --advertise, default node name,
and a --join by a DNS name that resolves to several addresses.

Runtimes run in-process and in plaintext (keyring None); nothing binds the real default port
8946 (another fnlb on this machine may hold it). No wall-clock assertions: every wait is
"eventually, within a generous bound".
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fnlb.config import Settings, parse_peer
from fnlb.gossip.messages import Addr, MemberState
from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.runtime import GossipRuntime
from fnlb.shell.cluster import gossip_runtime
from tests.support import eventually
from tests.support_proc import free_port


def runtime(listen: str = "127.0.0.1:0", **options: Any) -> GossipRuntime:
    return GossipRuntime(
        listen=listen, profile=GossipProfile.fnlb_default(), keyring=None, **options
    )


@contextlib.asynccontextmanager
async def running(*runtimes: GossipRuntime) -> AsyncIterator[None]:
    started: list[GossipRuntime] = []
    try:
        for rt in runtimes:
            await rt.start()
            started.append(rt)
        yield
    finally:
        for rt in reversed(started):
            await rt.stop()


def seed_of(rt: GossipRuntime) -> str:
    assert rt.bound is not None
    return f"{rt.bound[0]}:{rt.bound[1]}"


def listed(observer: GossipRuntime) -> dict[str, Addr]:
    """name -> address, for every member `observer` holds alive (itself included)."""
    return {m.name: m.addr for m in observer.members() if m.state is MemberState.ALIVE}


class _BindRefused(Exception):
    pass


def test_a_seed_without_a_port_means_the_default_gossip_port_8946() -> None:
    assert parse_peer("10.0.0.5") == ("10.0.0.5", 8946)
    assert parse_peer("fnlb.internal") == ("fnlb.internal", 8946)
    assert parse_peer("[::1]") == ("::1", 8946)
    assert parse_peer("10.0.0.5:7000") == ("10.0.0.5", 7000)


async def test_joining_without_gossip_listen_binds_port_8946(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Stop at the bind instead of taking 8946 on this machine: what start() asks for is the
    # option's effect.
    asked: list[tuple[str, int]] = []

    async def no_bind(self: GossipRuntime, ip: str, port: int) -> None:
        asked.append((ip, port))
        raise _BindRefused

    monkeypatch.setattr(GossipRuntime, "_bind", no_bind)
    s = Settings(join=("127.0.0.1:9",), gossip_insecure=True)
    rt = gossip_runtime(s)
    with pytest.raises(_BindRefused):
        await rt.start()
    assert asked == [("0.0.0.0", 8946)]


async def test_a_peer_is_listed_by_the_others_at_its_advertised_address() -> None:
    port = free_port()
    seed = runtime(node_name="seed")
    async with running(seed):
        # Bound on 127.0.0.1, advertised as 127.0.0.2 (as behind NAT: the address others
        # must use differs from the one bound).
        natted = runtime(
            f"127.0.0.1:{port}",
            node_name="natted",
            advertise=f"127.0.0.2:{port}",
            join=(seed_of(seed),),
        )
        async with running(natted):
            assert natted.address == ("127.0.0.2", port)
            await eventually(lambda: "natted" in {m.name for m in seed.members()})
            row = next(m for m in seed.members() if m.name == "natted")
            assert row.addr == ("127.0.0.2", port)


async def test_without_a_node_name_the_name_is_hostname_and_port() -> None:
    rt = runtime()
    async with running(rt):
        assert rt.bound is not None
        assert rt.name == f"{socket.gethostname()}:{rt.bound[1]}"


def _two_seed_runtimes() -> tuple[GossipRuntime, GossipRuntime, int]:
    """Two lone seeds on 127.0.0.1:P and 127.0.0.2:P (the same port, as behind one name)."""
    for _ in range(20):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.2", port))
            except OSError:
                continue
        return (
            runtime(f"127.0.0.1:{port}", node_name="seed-1"),
            runtime(f"127.0.0.2:{port}", node_name="seed-2"),
            port,
        )
    raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")  # pragma: no cover


async def test_a_join_by_a_dns_name_reaches_every_address_it_resolves_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed1, seed2, port = _two_seed_runtimes()
    loop = asyncio.get_running_loop()
    real_getaddrinfo = loop.getaddrinfo

    async def getaddrinfo(host: Any, port_: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "seeds.fnlb.test":
            return [
                (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", int(port_))),
                (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.2", int(port_))),
            ]
        return await real_getaddrinfo(host, port_, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    joiner = runtime(node_name="joiner", join=(f"seeds.fnlb.test:{port}",))
    async with running(seed1, seed2, joiner):
        # The two seeds do not know each other: only a join to each address puts both in the
        # joiner's table (and the joiner in both of theirs).
        everyone = {"seed-1", "seed-2", "joiner"}
        await eventually(lambda: set(listed(joiner)) == everyone)
        await eventually(lambda: "joiner" in listed(seed1) and "joiner" in listed(seed2))
        assert listed(joiner)["seed-2"] == ("127.0.0.2", port)
        assert seed1.traffic["tcp_streams_served"] >= 1
        assert seed2.traffic["tcp_streams_served"] >= 1
