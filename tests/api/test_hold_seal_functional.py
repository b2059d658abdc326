"""`POST /1/lb/cluster/hold` with a gossip key: only a key holder's change, sealed to this peer,
once, is held; and the writer counts a peer only when its answer is sealed back (issue #12)."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgpack

from fnlb.cluster import hold_seal
from fnlb.gossip.crypto import GossipCipher, Keyring
from fnlb.gossip.keyring_file import encode_key
from fnlb.server import Balancer
from testkit.peers import peers
from tests.support_tls import TestCa

KEY = bytes(range(32))
KEYED = {"gossip_key": encode_key(KEY), "gossip_insecure": False}


def change(node: str) -> bytes:
    now = int(time.time() * 1000)
    return msgpack.packb(["n", [[node, now, 0, "q", True]]], use_bin_type=True)


async def post(client: aiohttp.ClientSession, b: Balancer, body: bytes) -> tuple[int, Any]:
    async with client.post(
        f"http://{b.mgmt_address}/1/lb/cluster/hold",
        data=body,
        headers={"Content-Type": hold_seal.CONTENT_TYPE_SEALED},
    ) as r:
        return r.status, await r.json()


async def test_an_unsealed_or_misaddressed_or_replayed_hold_is_refused_403() -> None:
    async with peers(2, **KEYED) as (_, b), aiohttp.ClientSession() as client:
        sender = GossipCipher(Keyring([KEY]), "fnlb", name="p0")
        status, body = await post(client, b, change("n:1"))  # bare msgpack: what anyone sends
        assert status == 403
        assert "sealed" in body["msg"]
        for_p9, _ = hold_seal.seal_request(sender, change("n:2"), time.time(), "p9")
        assert (await post(client, b, for_p9))[0] == 403
        wrong_key = GossipCipher(Keyring([bytes(32)]), "fnlb")
        forged, _ = hold_seal.seal_request(wrong_key, change("n:3"), time.time(), "p1")
        assert (await post(client, b, forged))[0] == 403
        sealed, nonce = hold_seal.seal_request(sender, change("n:4"), time.time(), "p1")
        status, body = await post(client, b, sealed)
        assert status == 200
        assert hold_seal.answer_holds(sender, body["seal"], nonce, time.time())
        assert (await post(client, b, sealed))[0] == 403  # the same request again: a replay
        assert b.peer.nodes() == ["n:4"]
        drops = b.peer.drops
        assert drops["hold_not_for_us"] == 1
        assert drops["hold_auth_failed"] == 1
        assert drops["hold_bad_version"] == 1  # the bare msgpack
        assert drops["hold_replayed"] == 1


async def test_a_write_is_acknowledged_by_a_peer_over_the_sealed_hold() -> None:
    async with peers(2, **KEYED) as (a, b), aiohttp.ClientSession() as client:
        async with client.put(
            f"http://{a.mgmt_address}/1/lb/nodes", json={"node": "127.0.0.1:9"}
        ) as r:
            assert r.status == 200
            assert (await r.json())["held_by"] == 2
        assert b.peer.nodes() == ["127.0.0.1:9"]


def test_a_hold_answer_sealed_for_another_request_is_not_counted() -> None:
    writer = GossipCipher(Keyring([KEY]), "fnlb", name="p0")
    peer = GossipCipher(Keyring([KEY]), "fnlb", name="p1")
    now = time.time()
    first, _ = hold_seal.seal_request(writer, change("n:1"), now, "p1")
    _, second_nonce = hold_seal.seal_request(writer, change("n:2"), now, "p1")
    seal = hold_seal.seal_answer(peer, hold_seal.open_request(peer, first, now), now)
    assert not hold_seal.answer_holds(writer, seal, second_nonce, now)
    assert not hold_seal.answer_holds(writer, "not base64!", second_nonce, now)
    assert not hold_seal.answer_holds(writer, None, second_nonce, now)


async def test_a_write_is_acknowledged_over_mutual_tls_management(tmp_path: Path) -> None:
    """Peers whose management port speaks TLS and asks for client certificates still hold
    each other's changes: the hold goes over https with this peer's own certificate."""
    ca = TestCa(tmp_path)
    issued = ca.issue("peer")
    tls = {
        "mgmt_tls_cert": str(issued.cert),
        "mgmt_tls_key": str(issued.key),
        "mgmt_tls_client_ca": str(ca.cert),
    }
    client_tls = ssl.create_default_context(cafile=str(ca.cert))
    client_tls.load_cert_chain(issued.cert, issued.key)
    async with peers(2, **KEYED, **tls) as (a, b), aiohttp.ClientSession() as client:
        async with client.put(
            f"https://{a.mgmt_address}/1/lb/nodes", json={"node": "127.0.0.1:9"}, ssl=client_tls
        ) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["held_by"] == 2
        assert b.peer.nodes() == ["127.0.0.1:9"]
