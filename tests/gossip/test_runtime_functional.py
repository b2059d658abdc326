"""fnlb peers on loopback find each other by gossip, see crashes and departures, and ignore
strangers: in-process `Balancer`s, and real `fnlb serve` processes where a kill -9 is needed.

No wall-clock assertions: every wait is "eventually, within a generous bound".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import redirect_stderr
from typing import Any

import aiohttp
import pytest

from fnlb import cli
from fnlb.api.gossip import GOSSIP_OFF
from fnlb.config import Settings
from fnlb.gossip.keyring_file import encode_key
from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.runtime import GossipRuntime
from fnlb.server import Balancer
from tests.support import eventually
from tests.support_proc import FnlbProcess, free_port

KEY = encode_key(bytes(range(32)))
OTHER_KEY = encode_key(bytes(range(100, 132)))


def settings(name: str, join: tuple[str, ...] = (), **changes: Any) -> Settings:
    base = Settings(
        listen="127.0.0.1:0",
        mgmt_listen="127.0.0.1:0",
        gossip_listen="127.0.0.1:0",
        join=join,
        node_name=name,
        gossip_key=KEY,
        workers=1,
    )
    return dataclasses.replace(base, **changes)


def gossip_seed(b: Balancer) -> str:
    assert b.gossip is not None
    assert b.gossip.bound is not None
    return f"127.0.0.1:{b.gossip.bound[1]}"


async def peers_of(session: aiohttp.ClientSession, b: Balancer) -> dict[str, str]:
    """name -> state, as GET /1/lb/peers on `b`'s management port answers."""
    async with session.get(f"http://{b.mgmt_address}/1/lb/peers") as r:
        assert r.status == 200
        body = await r.json()
    return {p["name"]: p["state"] for p in body["peers"]}


@contextlib.asynccontextmanager
async def balancers(*all_settings: Settings) -> AsyncIterator[list[Balancer]]:
    started: list[Balancer] = []
    try:
        for s in all_settings:
            b = Balancer(s)
            await b.start()
            started.append(b)
        yield started
    finally:
        for b in started:
            await b.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_three_peers_join_through_a_dns_name_and_list_each_other_alive(
    session: aiohttp.ClientSession,
) -> None:
    async with balancers(settings("a")) as (a,):
        # "localhost" resolves to 127.0.0.1 (and maybe ::1, where nobody listens): joining a
        # name joins every address it resolves to, so one that answers is enough.
        seed = f"localhost:{gossip_seed(a).rsplit(':', 1)[1]}"
        async with balancers(settings("b", (seed,)), settings("c", (seed,))) as (b, c):
            everyone = {"a": "alive", "b": "alive", "c": "alive"}

            async def all_alive() -> bool:
                return all([await peers_of(session, x) == everyone for x in (a, b, c)])

            await eventually(all_alive)
            async with session.get(f"http://{b.mgmt_address}/1/lb/peers") as r:
                body = await r.json()
            assert body["self"] == "b"
            row = next(p for p in body["peers"] if p["name"] == "a")
            assert row["address"] == gossip_seed(a)
            assert isinstance(row["incarnation"], int)


async def test_a_peer_started_before_its_seed_joins_once_the_seed_is_up(
    session: aiohttp.ClientSession,
) -> None:
    port = free_port()
    late = settings("late-joiner", (f"127.0.0.1:{port}",))
    seed = settings("seed", gossip_listen=f"127.0.0.1:{port}")
    async with balancers(late) as (_,), balancers(seed) as (a,):

        async def joined() -> bool:
            return await peers_of(session, a) == {"seed": "alive", "late-joiner": "alive"}

        await eventually(joined)


async def test_a_graceful_stop_is_seen_as_left(session: aiohttp.ClientSession) -> None:
    async with balancers(settings("a")) as (a,):
        seed = (gossip_seed(a),)
        async with balancers(settings("b", seed)) as (b,):
            c = Balancer(settings("c", seed))
            await c.start()
            try:
                everyone = {"a": "alive", "b": "alive", "c": "alive"}
                await eventually(lambda: _all(session, (a, b, c), everyone))
            finally:
                await c.stop()
            await eventually(
                lambda: _all(session, (a, b), {"a": "alive", "b": "alive", "c": "left"})
            )


async def test_two_peers_given_one_name_say_so_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without it, two peers sharing a --node-name refute each other forever, silently.

    How soon the twins notice is a property of the protocol, asserted in virtual time
    (tests/gossip/test_sim.py: within two push-pull intervals). Here a 1 s push-pull makes
    that a second or two, so the generous bound below is no race with the protocol: what is
    checked is that real runtimes count the conflict and log it at ERROR.
    """
    profile = GossipProfile.fnlb_default().replace(push_pull_interval=1.0)

    def runtime(name: str, join: tuple[str, ...] = ()) -> GossipRuntime:
        return GossipRuntime(
            listen="127.0.0.1:0", profile=profile, keyring=None, node_name=name, join=join
        )

    a = runtime("a")
    await a.start()
    try:
        assert a.bound is not None
        seed = (f"127.0.0.1:{a.bound[1]}",)
        twins = (runtime("twin", seed), runtime("twin", seed))
        for t in twins:
            await t.start()
        try:
            await eventually(
                lambda: all(int(t.stats()["member"].get("name_conflicts", 0)) for t in twins)
            )
        finally:
            for t in twins:
                await t.stop()
    finally:
        await a.stop()
    said = [r for r in caplog.records if "its own --node-name" in r.getMessage()]
    assert said
    assert all(r.levelname == "ERROR" for r in said)


async def test_a_peer_of_another_cluster_or_key_never_appears(
    session: aiohttp.ClientSession,
) -> None:
    async with balancers(settings("a")) as (a,):
        seed = (gossip_seed(a),)
        strangers = (
            settings("other-key", seed, gossip_key=OTHER_KEY),
            settings("other-cluster", seed, cluster_name="elsewhere"),
            settings("plaintext", seed, gossip_key="", gossip_insecure=True),
        )
        async with balancers(settings("b", seed), *strangers) as (b, *others):
            assert a.gossip is not None

            def refused_all_three() -> bool:
                assert a.gossip is not None
                drops = a.gossip.all_drops()
                return all(drops.get(r, 0) > 0 for r in ("auth_failed", "label_mismatch"))

            await eventually(refused_all_three)
            await eventually(lambda: _all(session, (a, b), {"a": "alive", "b": "alive"}))
            # The strangers keep trying to join meanwhile; none gets in, none sees us.
            await asyncio.sleep(1.0)
            assert await peers_of(session, a) == {"a": "alive", "b": "alive"}
            assert await peers_of(session, b) == {"a": "alive", "b": "alive"}
            for o in others:
                assert o.gossip is not None
                assert set(await peers_of(session, o)) == {o.gossip.name}
            assert a.gossip.all_drops().get("encryption_mismatch", 0) > 0


async def _all(session: aiohttp.ClientSession, bs: tuple[Balancer, ...], want: Any) -> bool:
    return all([await peers_of(session, b) == want for b in bs])


async def test_without_cluster_mode_no_gossip_runs_and_peers_answers_404(
    session: aiohttp.ClientSession,
) -> None:
    s = Settings(listen="127.0.0.1:0", mgmt_listen="127.0.0.1:0", nodes="127.0.0.1:9", workers=1)
    async with balancers(s) as (b,):
        assert b.gossip is None
        async with session.get(f"http://{b.mgmt_address}/1/lb/peers") as r:
            assert r.status == 404
            assert await r.json() == {"msg": GOSSIP_OFF}


# --- real processes ----------------------------------------------------------------------


def _udp_socket_inodes() -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            inodes.update(line.split()[9] for line in list(f)[1:])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    out: set[str] = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                out.add(target[len("socket:[") : -1])
    return out


def test_a_lone_fnlb_opens_no_gossip_socket() -> None:
    p = FnlbProcess("-nodes", "127.0.0.1:9")
    try:
        assert not _socket_inodes(p.proc.pid) & _udp_socket_inodes()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(p.mgmt_url("/1/lb/peers"), timeout=5)
        assert e.value.code == 404
        e.value.close()
    finally:
        p.stop()


def test_joining_without_a_key_exits_2_with_the_keygen_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("FNLB_GOSSIP_KEY", "FNLB_GOSSIP_KEYRING_FILE", "FNLB_GOSSIP_INSECURE"):
        monkeypatch.delenv(name, raising=False)
    err = io.StringIO()
    with redirect_stderr(err):
        code = cli.main(["serve", "--join", "127.0.0.1:9", "-listen", "127.0.0.1:0"])
    assert code == 2
    assert "fnlb keygen" in err.getvalue()
    assert "--gossip-insecure" in err.getvalue()


def _peers(p: FnlbProcess) -> dict[str, str]:
    with urllib.request.urlopen(p.mgmt_url("/1/lb/peers"), timeout=5) as r:
        body = json.load(r)
    return {row["name"]: row["state"] for row in body["peers"]}


def _wait(check: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s")
        time.sleep(0.1)


@pytest.mark.slow
def test_a_peer_killed_with_sigkill_is_marked_dead_by_the_others() -> None:
    procs: list[FnlbProcess] = []
    try:
        seed_port = free_port()
        for i in range(3):
            port = seed_port if i == 0 else free_port()
            join = () if i == 0 else ("-join", f"127.0.0.1:{seed_port}")
            procs.append(
                FnlbProcess(
                    f"-gossip-listen=127.0.0.1:{port}",
                    f"-node-name=p{i}",
                    f"-gossip-key={KEY}",
                    *join,
                )
            )
        everyone = {"p0": "alive", "p1": "alive", "p2": "alive"}
        _wait(lambda: all(_peers(p) == everyone for p in procs), 30)
        victim = procs.pop()
        victim.proc.kill()
        victim.proc.wait(10)
        _wait(lambda: all(_peers(p).get("p2") == "dead" for p in procs), 30)
    finally:
        for p in procs:
            p.stop()
        if "victim" in locals():
            victim.stop()


def test_serve_in_cluster_mode_logs_the_join_and_exits_0_on_sigterm() -> None:
    seed_port = free_port()
    a = FnlbProcess(f"-gossip-listen=127.0.0.1:{seed_port}", "-node-name=a", "-gossip-insecure")
    b = FnlbProcess(
        f"-gossip-listen=127.0.0.1:{free_port()}",
        "-node-name=b",
        "-gossip-insecure",
        f"-join=127.0.0.1:{seed_port}",
    )
    try:
        _wait(lambda: _peers(a) == {"a": "alive", "b": "alive"}, 30)
        b.proc.terminate()
        assert b.wait(30) == 0
        assert "gossip peer joined" in b.output()
        _wait(lambda: _peers(a).get("b") == "left", 30)
    finally:
        a.stop()
        b.stop()


async def test_garbage_on_either_socket_is_dropped_and_counted() -> None:
    async with balancers(settings("a")) as (a,):
        rt = a.gossip
        assert rt is not None
        assert rt.bound is not None
        host, port = rt.bound
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=(host, port)
        )
        try:
            udp.sendto(b"\x00garbage")  # not an envelope version
            udp.sendto(b"")
        finally:
            udp.close()
        for payload in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x10short"):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(payload)
            await writer.drain()
            writer.write_eof()
            assert await reader.read() == b""  # closed without an answer
            writer.close()
            await writer.wait_closed()

        def counted() -> bool:
            drops = rt.all_drops()
            return all(drops.get(r, 0) > 0 for r in ("bad_version", "frame_too_large"))

        await eventually(counted)
        assert rt.all_drops().get("stream_closed", 0) > 0
        assert rt.started


async def test_a_push_pull_the_peer_asks_for_goes_out_at_its_next_pump(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A young peer asks for an exchange at each epoch (`Peer.take_push_pull`): its pump
    hands the ask to gossip, which opens one to a live peer at once, out of turn."""
    async with (
        balancers(settings("a")) as (a,),
        balancers(settings("b", (gossip_seed(a),))) as (b,),
    ):
        both = {"a": "alive", "b": "alive"}

        async def joined() -> bool:
            return await peers_of(session, a) == both == await peers_of(session, b)

        await eventually(joined)
        ga, gb, pump = a.gossip, b.gossip, a.pump
        assert ga is not None
        assert gb is not None
        assert pump is not None
        asked = ga.member.stats["push_pull_asked"]
        served = gb.member.stats["push_pull_served"]
        monkeypatch.setattr(a.peer, "take_push_pull", lambda: True)
        pump.pump()
        monkeypatch.undo()
        assert ga.member.stats["push_pull_asked"] == asked + 1
        await eventually(lambda: gb.member.stats["push_pull_served"] > served)
