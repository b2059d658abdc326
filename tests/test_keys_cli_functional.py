"""`fnlb keys ...` against a small management API on loopback built from the rotation functions.

The server here is also the reference for what the real management API must answer.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from fnlb.cli import keys as keys_cli
from fnlb.errors import BadRequest
from fnlb.gossip.crypto import Keyring, key_id
from fnlb.gossip.keyring_file import (
    encode_key,
    install_key,
    key_from_request,
    keys_listing,
    load_keyring_file,
    remove_key,
    save_keyring_file,
    use_key,
)

OLD = bytes(range(32))
NEW = bytes(range(50, 82))


class Peer:
    """The live keyring of one peer and the file it persists to."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        save_keyring_file(path, [OLD])
        self.keyring: Keyring = load_keyring_file(path)


PEER = web.AppKey("peer", Peer)


async def list_keys(request: web.Request) -> web.Response:
    return web.json_response(keys_listing(request.app[PEER].keyring, persisted=True))


def change(op: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    ops = {"install": install_key, "use": use_key, "remove": remove_key}

    async def handler(request: web.Request) -> web.Response:
        peer = request.app[PEER]
        try:
            try:
                body = await request.json()
            except ValueError:
                raise BadRequest("body is not JSON") from None
            listing = ops[op](peer.keyring, peer.path, key_from_request(body))
        except BadRequest as e:
            return web.json_response({"msg": e.msg}, status=e.status)
        return web.json_response(listing)

    return handler


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[tuple[str, Peer]]:
    app = web.Application()
    state = Peer(tmp_path / "keyring.json")
    app[PEER] = state
    app.router.add_get("/1/lb/keys", list_keys)
    app.router.add_put("/1/lb/keys", change("install"))
    app.router.add_post("/1/lb/keys/primary", change("use"))
    app.router.add_delete("/1/lb/keys", change("remove"))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")), state
    finally:
        await server.close()


async def keys(*argv: str, stdin: str = "") -> int:
    parser = argparse.ArgumentParser()
    keys_cli.add_arguments(parser)
    args = parser.parse_args(argv)
    # run() owns its event loop (asyncio.run), so it runs in a thread beside the server's loop
    return await asyncio.to_thread(_run_with_stdin, args, stdin)


def _run_with_stdin(args: argparse.Namespace, stdin: str) -> int:
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return keys_cli.run(args)
    finally:
        sys.stdin = saved


async def test_rotation_from_the_cli(
    peer: tuple[str, Peer], capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = peer
    assert await keys("install", encode_key(NEW), "--mgmt", url) == 0
    assert state.keyring.keys() == [OLD, NEW]
    out = capsys.readouterr().out
    assert f"{key_id(OLD)}  primary" in out
    assert key_id(NEW) in out
    assert encode_key(NEW) not in out

    assert await keys("use", "-", "--mgmt", url, stdin=encode_key(NEW) + "\n") == 0
    assert state.keyring.primary == NEW
    assert await keys("remove", encode_key(OLD), "--mgmt", url) == 0
    assert state.keyring.keys() == [NEW]
    assert load_keyring_file(state.path).keys() == [NEW]

    capsys.readouterr()
    assert await keys("list", "--mgmt", url + "/") == 0
    listed = capsys.readouterr().out
    assert "key id        role" in listed  # a header row
    assert f"{key_id(NEW)}  primary (seals new packets)" in listed

    assert await keys("ls", "--json", "--mgmt", url) == 0  # ls: an alias of list
    answer = json.loads(capsys.readouterr().out)
    assert answer["peers"][url]["keys"] == [{"id": key_id(NEW), "primary": True}]
    assert await keys("rm", encode_key(NEW), "--mgmt", url) == 1  # the primary: refused
    assert "primary" in capsys.readouterr().err


async def test_a_refusal_shows_the_peers_message_and_exits_1(
    peer: tuple[str, Peer], capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = peer
    assert await keys("remove", encode_key(OLD), "--mgmt", url) == 1
    err = capsys.readouterr().err
    assert "HTTP 409" in err
    assert "primary" in err
    assert await keys("use", encode_key(NEW), "--mgmt", url) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert state.keyring.keys() == [OLD]


async def test_an_unreachable_peer_exits_1_and_the_others_still_change(
    peer: tuple[str, Peer], capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = peer
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert await keys("install", encode_key(NEW), "--mgmt", dead, "--mgmt", url) == 1
    assert "cannot reach the peer" in capsys.readouterr().err
    assert NEW in state.keyring


async def test_an_answer_that_is_not_a_listing_is_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app.router.add_get("/1/lb/keys", hello)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        assert await keys("list", "--mgmt", str(server.make_url(""))) == 1
    finally:
        await server.close()
    assert "unexpected answer" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("install", "--mgmt", "http://x"), "needs a KEY"),
        (("install", "%%%", "--mgmt", "http://x"), "not valid base64"),
        (("list", "abc", "--mgmt", "http://x"), "takes no key"),
    ],
)
async def test_bad_arguments_exit_2_without_calling_anyone(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await keys(*argv) == 2
    assert message in capsys.readouterr().err
