"""`fnlb keys install|use|remove|list`: rotate gossip keys on running peers, without downtime.

Rotation, run against every peer in turn (several --mgmt flags do that in one command)::

    fnlb keys install NEWKEY --mgmt http://a:8081 --mgmt http://b:8081   # all accept NEWKEY
    fnlb keys use NEWKEY     --mgmt http://a:8081 --mgmt http://b:8081   # all seal with it
    fnlb keys remove OLDKEY  --mgmt http://a:8081 --mgmt http://b:8081   # none accept OLDKEY

Give KEY as `-` to read it from standard input, which keeps it out of `ps` and shell history.
`ls` and `rm` are aliases of `list` and `remove`; `--json` prints every peer's listing (or its
error) as one JSON object instead of the tables.

The management API this talks to (each answer is JSON; keys never appear in an answer, only
their ids, 12 hex digits of a SHA-256)::

    GET    {mgmt}/1/lb/keys                                    -> 200 LISTING
    PUT    {mgmt}/1/lb/keys          {"key": "<base64>"}       -> 200 LISTING   (idempotent)
    POST   {mgmt}/1/lb/keys/primary  {"key": "<base64>"}       -> 200 LISTING   (404 if the key
                                                                    is not installed)
    DELETE {mgmt}/1/lb/keys          {"key": "<base64>"}       -> 200 LISTING   (404 if not
                                                                    installed, 409 if primary)
    LISTING = {"keys": [{"id": "3f9a0c21d4e5", "primary": true}, ...], "persisted": true}
    errors  = 4xx/5xx {"msg": "what is wrong"}; 400 for a bad key, 500 if the keyring file
              cannot be written (the change is then not applied); 404 from a peer running
              without encryption (--gossip-insecure) or predating this API.

`persisted` says whether the peer wrote the change to its keyring file (false when it was
started with an inline --gossip-key: the change is then lost on restart). Exit status: 0 if
every peer answered 2xx, 1 if any refused or could not be reached, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, TextIO

import aiohttp

from fnlb.cli.mgmt_client import (
    NO_OPTIONS,
    ClientOptions,
    PeerError,
    add_client_arguments,
    call,
    client_options,
    client_session,
)
from fnlb.cli.output import canonical, table, verbs
from fnlb.errors import ConfigError
from fnlb.gossip.keyring_file import decode_key

#: action -> (HTTP method, path under the management URL)
ROUTES: dict[str, tuple[str, str]] = {
    "list": ("GET", "/1/lb/keys"),
    "install": ("PUT", "/1/lb/keys"),
    "use": ("POST", "/1/lb/keys/primary"),
    "remove": ("DELETE", "/1/lb/keys"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=verbs(tuple(ROUTES)),
        help="list (ls) key ids; install a key; use an installed key as primary; remove (rm) a key",
    )
    parser.add_argument(
        "key",
        nargs="?",
        default=None,
        help="base64 key (from 'fnlb keygen'), or '-' to read it from standard input",
    )
    parser.add_argument(
        "--mgmt",
        action="append",
        required=True,
        metavar="URL",
        help="management API of a running peer, e.g. http://10.0.0.5:8081; repeat for each peer",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for each peer (default: 10)"
    )
    parser.add_argument("--json", action="store_true", help="print the listings as JSON")
    add_client_arguments(parser)


def run(args: argparse.Namespace) -> int:
    args.action = canonical(args.action, tuple(ROUTES))
    body: dict[str, str] | None = None
    if args.action == "list":
        if args.key is not None:
            return _usage("'list' takes no key")
    else:
        if args.key is None:
            return _usage(f"'{args.action}' needs a KEY (base64, or '-' for standard input)")
        text = sys.stdin.readline() if args.key == "-" else args.key
        try:
            decode_key(text, "KEY")
        except ValueError as e:
            return _usage(str(e))
        body = {"key": text.strip()}
    if args.timeout <= 0:
        return _usage("--timeout must be greater than 0")
    as_json = bool(getattr(args, "json", False))
    try:
        options = client_options(args)
    except ConfigError as e:
        return _usage(str(e))
    return asyncio.run(
        _run_all(args.action, args.mgmt, body, args.timeout, sys.stdout, options, as_json)
    )


def _usage(message: str) -> int:
    print(f"fnlb keys: error: {message}", file=sys.stderr)
    return 2


async def _run_all(
    action: str,
    urls: list[str],
    body: dict[str, str] | None,
    seconds: float,
    out: TextIO,
    options: ClientOptions = NO_OPTIONS,
    as_json: bool = False,
) -> int:
    failed = 0
    answers: dict[str, Any] = {}
    async with client_session(options, seconds) as session:
        for url in urls:
            try:
                listing = await call_peer(session, action, url, body)
            except PeerError as e:
                failed += 1
                print(f"fnlb keys: {e}", file=sys.stderr)
                answers[url] = {"error": str(e)}
                continue
            answers[url] = listing
            if not as_json:
                out.write(f"{url}: {action} ok\n{format_listing(listing)}\n")
    if as_json:
        out.write(json.dumps({"action": action, "peers": answers}, indent=2) + "\n")
    return 1 if failed else 0


async def call_peer(
    session: aiohttp.ClientSession, action: str, mgmt: str, body: dict[str, str] | None
) -> dict[str, Any]:
    """Send one key request to one peer; its listing, or PeerError saying what went wrong."""
    method, path = ROUTES[action]
    answer = await call(session, method, mgmt, path, body)
    if not isinstance(answer.get("keys"), list):
        raise PeerError(f"{mgmt}{path}: unexpected answer (not a key listing): {answer!r:.200}")
    return answer


def format_listing(listing: dict[str, Any]) -> str:
    """A peer's key listing for people: a table of key ids and roles, the primary first."""
    rows = [
        [
            str(entry.get("id")),
            "primary (seals new packets)" if entry.get("primary") else "accepted",
        ]
        for entry in listing.get("keys", [])
        if isinstance(entry, dict)
    ]
    lines = ["  " + line for line in table(["key id", "role"], rows).splitlines()]
    if listing.get("persisted") is False:
        lines.append("  note: not persisted (peer started with an inline key)")
    return "\n".join(lines)
