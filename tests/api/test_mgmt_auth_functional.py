"""Management tokens and the audit trail, against real listeners on loopback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from fnlb.config import Settings
from fnlb.errors import ConfigError
from fnlb.server import Balancer
from tests.support import running_balancer

ALICE = "alice-token-0123456789abcdef"  # admin
BOB = "bob-token-0123456789abcdef"  # read
KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes


def tokens_file(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "tokens"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def url(lb: Balancer, path: str) -> str:
    return f"http://{lb.mgmt_address}{path}"


async def answer(resp: aiohttp.ClientResponse) -> tuple[int, dict[str, object]]:
    body = await resp.json()
    assert isinstance(body, dict)
    return resp.status, body


async def test_changes_need_an_admin_token_and_reads_stay_open(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    tokens = tokens_file(tmp_path, f"# who may change nodes\nalice:{ALICE}\nbob:{BOB}:read\n")
    async with running_balancer(mgmt_tokens_file=tokens) as lb:
        nodes = url(lb, "/1/lb/nodes")
        body = {"node": "127.0.0.1:1"}
        async with client.put(nodes, json=body) as r:
            status, msg = await answer(r)
            assert status == 401
            assert "needs a management token" in str(msg["msg"])
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        for header in ("Basic YWxpY2U6eA==", "Bearer", "Bearer two words", f"Bearer {ALICE}:"):
            async with client.put(nodes, json=body, headers={"Authorization": header}) as r:
                status, msg = await answer(r)
                assert (status, "malformed" in str(msg["msg"])) == (401, True), header
        async with client.put(nodes, json=body, headers=bearer(ALICE + "x")) as r:
            assert await answer(r) == (401, {"msg": "unknown token"})
        async with client.delete(nodes, json=body, headers=bearer(BOB)) as r:
            status, msg = await answer(r)
            assert status == 403
            assert "'bob' has role read" in str(msg["msg"])
        assert lb.peer.view.states == {}
        async with client.put(nodes, json=body, headers=bearer(ALICE)) as r:
            assert await answer(r) == (200, {"msg": "node added"})
        async with client.get(nodes) as r:  # reading the node list needs no token, as before
            assert r.status == 200
            assert "127.0.0.1:1" in (await r.json())["nodes"]
        async with client.post(nodes, json=body, headers=bearer(ALICE)) as r:
            assert r.status == 405  # authenticated, then the method is refused as before


async def test_a_lone_fnlb_without_tokens_keeps_the_original_open_api(
    client: aiohttp.ClientSession,
) -> None:
    async with running_balancer(listen="127.0.0.1:0", mgmt_listen="127.0.0.1:0") as lb:
        async with client.put(url(lb, "/1/lb/nodes"), json={"node": "127.0.0.1:1"}) as r:
            assert r.status == 200
        async with client.get(url(lb, "/1/lb/audit")) as r:
            events = (await r.json())["events"]
        assert [(e["token"], e["change"], e["status"]) for e in events] == [("-", "node_add", 200)]


async def test_every_change_attempt_is_audited_once_with_who_and_what(
    tmp_path: Path, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = tokens_file(tmp_path, f"alice:{ALICE}\nbob:{BOB}:read\n")
    caplog.set_level(logging.INFO, logger="fnlb.audit")
    async with running_balancer(mgmt_tokens_file=tokens, node_name="lb-a") as lb:
        nodes = url(lb, "/1/lb/nodes")
        async with client.put(nodes, json={"node": "127.0.0.1:7"}, headers=bearer(ALICE)):
            pass
        async with client.delete(nodes, json={"node": "127.0.0.1:7"}, headers=bearer(BOB)):
            pass
        async with client.put(nodes, data=b"{oops", headers=bearer(ALICE)):
            pass
        async with client.delete(nodes, json={"node": "127.0.0.1:7"}):
            pass
        async with client.get(nodes):  # reads are not changes: not audited
            pass
        async with client.get(url(lb, "/1/lb/audit")) as r:
            assert r.status == 401  # the audit trail says who did what: not for anyone
        async with client.get(url(lb, "/1/lb/audit"), headers=bearer(BOB)) as r:
            events = (await r.json())["events"]
    rows = [(e["token"], e["change"], e["target"], e["status"]) for e in events]
    assert rows == [
        ("alice", "node_add", "127.0.0.1:7", 200),
        ("bob", "node_delete", "-", 403),
        ("alice", "node_add", "-", 400),
        ("-", "node_delete", "-", 401),
    ]
    assert {e["peer"] for e in events} == {"lb-a"}
    assert {e["remote"] for e in events} == {"127.0.0.1"}
    assert all(e["time"].endswith("Z") for e in events)
    logged = [r for r in caplog.records if r.name == "fnlb.audit"]
    assert [r.getMessage() for r in logged] == ["mgmt_change"] * 4
    assert [(r.__dict__["token"], r.__dict__["status"]) for r in logged] == [
        ("alice", 200),
        ("bob", 403),
        ("alice", 400),
        ("-", 401),
    ]


async def test_key_changes_need_admin_listings_need_a_token_and_audit_names_key_ids(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    from fnlb.gossip.crypto import key_id
    from fnlb.gossip.keyring_file import decode_key
    from testkit.peers import peer_settings

    new_key = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
    tokens = tokens_file(tmp_path, f"alice:{ALICE}\nbob:{BOB}:read\n")
    settings = peer_settings("p0", gossip_insecure=False, gossip_key=KEY, mgmt_tokens_file=tokens)
    lb = Balancer(settings)
    await lb.start()
    try:
        keys = url(lb, "/1/lb/keys")
        async with client.get(keys) as r:
            assert r.status == 401
        async with client.get(keys, headers=bearer(BOB)) as r:
            assert r.status == 200
            assert len((await r.json())["keys"]) == 1
        async with client.put(keys, json={"key": new_key}, headers=bearer(BOB)) as r:
            assert r.status == 403
        async with client.put(keys, json={"key": new_key}) as r:
            assert r.status == 401
        async with client.put(keys, json={"key": new_key}, headers=bearer(ALICE)) as r:
            assert r.status == 200
        async with client.get(url(lb, "/1/lb/peers")) as r:
            assert r.status == 200  # membership stays readable for monitoring
        async with client.get(url(lb, "/1/lb/audit"), headers=bearer(ALICE)) as r:
            events = (await r.json())["events"]
    finally:
        await lb.stop()
    assert [(e["token"], e["change"], e["status"]) for e in events] == [
        ("bob", "key_install", 403),
        ("-", "key_install", 401),
        ("alice", "key_install", 200),
    ]
    assert events[2]["target"] == key_id(decode_key(new_key))
    assert events[2]["peer"] == "p0"
    assert new_key not in str(events)


async def test_tokens_reload_keeps_the_old_ones_when_the_new_file_is_bad(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    path = tokens_file(tmp_path, f"alice:{ALICE}\n")
    async with running_balancer(mgmt_tokens_file=path) as lb:
        nodes = url(lb, "/1/lb/nodes")
        tokens_file(tmp_path, f"bob:{BOB}\n")
        lb.security.reload()
        async with client.put(nodes, json={"node": "127.0.0.1:1"}, headers=bearer(ALICE)) as r:
            assert r.status == 401
        async with client.put(nodes, json={"node": "127.0.0.1:1"}, headers=bearer(BOB)) as r:
            assert r.status == 200
        tokens_file(tmp_path, "carol:short\n")
        lb.security.reload()
        async with client.put(nodes, json={"node": "127.0.0.1:2"}, headers=bearer(BOB)) as r:
            assert r.status == 200


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        (f"alice:{ALICE}\n", 0o644, "mode 0644"),
        (f"alice:{ALICE}\n", 0o660, "mode 0660"),
        ("alice\n", 0o600, "line 1: expected 'name:token'"),
        ("# nothing\n", 0o600, "holds no token"),
        ("alice:short\n", 0o600, "shorter than 16"),
        (f"al ice:{ALICE}\n", 0o600, "name 'al ice'"),
        (f"alice:{ALICE}:root\n", 0o600, "role 'root'"),
        (f"alice:{ALICE}\nalice:{BOB}\n", 0o600, "name 'alice' given twice"),
        (f"alice:{ALICE}\nbob:{ALICE}\n", 0o600, "same token given twice"),
    ],
)
def test_bad_tokens_files_refuse_to_start_saying_why(
    tmp_path: Path, text: str, mode: int, message: str
) -> None:
    path = tokens_file(tmp_path, text, mode)
    with pytest.raises(ConfigError, match=message):
        Balancer(Settings(listen="127.0.0.1:0", mgmt_listen="127.0.0.1:0", mgmt_tokens_file=path))
