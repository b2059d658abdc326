"""The cluster-mode management API on live peers: `/1/lb/peers`, `/1/lb/gossip`, `/1/lb/keys`.

The rotation test drives `fnlb keys` (fnlb/cli/keys.py) against three gossiping peers and
checks that the cluster stays together and ends up sealing with the new key only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from fnlb.api.gossip import GOSSIP_OFF
from fnlb.cli import keys as keys_cli
from fnlb.config import Settings
from fnlb.gossip.crypto import key_id
from fnlb.gossip.keyring_file import encode_key, load_keyring_file, save_keyring_file
from fnlb.server import Balancer
from tests.support import eventually

OLD = bytes(range(32))
NEW = bytes(range(60, 92))


def mgmt(b: Balancer) -> str:
    return f"http://{b.mgmt_address}"


def seed_of(b: Balancer) -> str:
    assert b.gossip is not None
    assert b.gossip.bound is not None
    return f"127.0.0.1:{b.gossip.bound[1]}"


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Balancer]:
    b = Balancer(settings)
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


def peer_settings(name: str, keyring_file: Path, join: tuple[str, ...] = ()) -> Settings:
    return Settings(
        listen="127.0.0.1:0",
        mgmt_listen="127.0.0.1:0",
        gossip_listen="127.0.0.1:0",
        join=join,
        node_name=name,
        gossip_keyring_file=str(keyring_file),
        workers=1,
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def peers(session: aiohttp.ClientSession, b: Balancer) -> dict[str, str]:
    async with session.get(mgmt(b) + "/1/lb/peers") as r:
        body = await r.json()
    return {p["name"]: p["state"] for p in body["peers"]}


async def keys(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    keys_cli.add_arguments(parser)
    # run() owns its event loop, so it runs in a thread beside the peers' loop
    return await asyncio.to_thread(keys_cli.run, parser.parse_args(argv))


@contextlib.asynccontextmanager
async def cluster_of_three(tmp_path: Path) -> AsyncIterator[list[Balancer]]:
    files = []
    for name in "abc":
        path = tmp_path / f"{name}.keyring"
        save_keyring_file(path, [OLD])
        files.append(path)
    async with running(peer_settings("a", files[0])) as a:
        join = (seed_of(a),)
        async with (
            running(peer_settings("b", files[1], join)) as b,
            running(peer_settings("c", files[2], join)) as c,
        ):
            yield [a, b, c]


async def test_rotating_keys_with_fnlb_keys_keeps_the_cluster_together(
    tmp_path: Path, session: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    async with cluster_of_three(tmp_path) as bs:
        everyone = {"a": "alive", "b": "alive", "c": "alive"}

        async def together() -> bool:
            return all([await peers(session, b) == everyone for b in bs])

        await eventually(together)
        urls = [arg for b in bs for arg in ("--mgmt", mgmt(b))]
        assert await keys("install", encode_key(NEW), *urls) == 0
        assert await keys("use", encode_key(NEW), *urls) == 0
        assert await keys("remove", encode_key(OLD), *urls) == 0
        capsys.readouterr()
        for b in bs:
            assert b.gossip is not None
            assert b.gossip.keyring is not None
            assert b.gossip.keyring.keys() == [NEW]
            assert load_keyring_file(b.settings.gossip_keyring_file).keys() == [NEW]

        # Still together, and now talking under the new key only: a member's traffic keeps
        # being opened with NEW, and a fresh peer holding only OLD cannot get in.
        def opened_with_new(b: Balancer) -> int:
            assert b.gossip is not None
            return b.gossip.cipher.opened_by_key.get(key_id(NEW), 0)

        before = [opened_with_new(b) for b in bs]
        await eventually(
            lambda: all(opened_with_new(b) > n for b, n in zip(bs, before, strict=True))
        )
        assert await together()
        stale = tmp_path / "stale.keyring"
        save_keyring_file(stale, [OLD])
        async with running(peer_settings("stale", stale, (seed_of(bs[0]),))) as s:
            first = bs[0].gossip
            assert first is not None
            await eventually(lambda: first.all_drops().get("auth_failed", 0) > 0)
            assert await peers(session, s) == {"stale": "alive"}
            assert await together()


async def test_keys_api_answers_like_the_reference(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    path = tmp_path / "k.keyring"
    save_keyring_file(path, [OLD])
    async with running(peer_settings("a", path)) as a:
        url = mgmt(a) + "/1/lb/keys"
        async with session.get(url) as r:
            assert r.status == 200
            assert await r.json() == {
                "keys": [{"id": key_id(OLD), "primary": True}],
                "persisted": True,
            }
        async with session.put(url, json={"key": "not base64!"}) as r:
            assert r.status == 400
            assert "base64" in (await r.json())["msg"]
        async with session.put(url, data=b"{") as r:
            assert r.status == 400
        async with session.post(url + "/primary", json={"key": encode_key(NEW)}) as r:
            assert r.status == 404
        async with session.delete(url, json={"key": encode_key(OLD)}) as r:
            assert r.status == 409
        async with session.put(url, json={"key": encode_key(NEW)}) as r:
            assert r.status == 200
            listing = await r.json()
        assert [k["id"] for k in listing["keys"]] == [key_id(OLD), key_id(NEW)]
        async with session.get(mgmt(a) + "/1/lb/gossip") as r:
            stats = await r.json()
        assert stats["self"] == "a"
        assert stats["encrypted"] is True
        assert "traffic" in stats
        assert "drops" in stats


async def test_without_encryption_or_cluster_mode_the_keys_api_is_404(
    session: aiohttp.ClientSession,
) -> None:
    insecure = Settings(
        listen="127.0.0.1:0",
        mgmt_listen="127.0.0.1:0",
        gossip_listen="127.0.0.1:0",
        node_name="plain",
        gossip_insecure=True,
        workers=1,
    )
    lone = Settings(listen="127.0.0.1:0", mgmt_listen="127.0.0.1:0", workers=1)
    async with running(insecure) as p, running(lone) as q:
        async with session.get(mgmt(p) + "/1/lb/keys") as r:
            assert r.status == 404
            assert "--gossip-insecure" in (await r.json())["msg"]
        async with session.get(mgmt(p) + "/1/lb/peers") as r:
            body = await r.json()
        assert body["self"] == "plain"
        assert body["peers"][0]["name"] == "plain"
        assert body["peers"][0]["state"] == "alive"
        for method, path in (
            ("GET", "/1/lb/keys"),
            ("PUT", "/1/lb/keys"),
            ("DELETE", "/1/lb/keys"),
            ("POST", "/1/lb/keys/primary"),
            ("GET", "/1/lb/peers"),
            ("GET", "/1/lb/gossip"),
        ):
            async with session.request(method, mgmt(q) + path, json={}) as r:
                assert r.status == 404
                assert await r.json() == {"msg": GOSSIP_OFF}
