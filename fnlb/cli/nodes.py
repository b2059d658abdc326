"""`fnlb nodes add|rm|ls`: the `/1/lb/nodes` API from the command line.

`fnlb nodes add fn1:8080 fn2:8080 --mgmt 10.0.0.5:8081` adds each node (in cluster mode, on
every peer, since the node list is shared); `rm` (or `remove`) deletes; `ls` (or `list`) lists
each node's state, as a table or, with `--json`, as the API's answer. Exit 0 when every
request succeeded, 1 when the peer refused one or could not be reached, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from fnlb.cli.mgmt_client import (
    DEFAULT_MGMT,
    ClientOptions,
    PeerError,
    add_client_arguments,
    call,
    client_options,
    client_session,
)
from fnlb.cli.output import canonical, table, verbs
from fnlb.config import parse_node_address
from fnlb.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", choices=verbs(ACTIONS), help="add, rm (remove) or ls (list) nodes"
    )
    parser.add_argument("node", nargs="*", help="Fn node host:port (for add and rm)")
    parser.add_argument(
        "--mgmt",
        default=DEFAULT_MGMT,
        metavar="URL",
        help=f"management API of a running fnlb (default: {DEFAULT_MGMT})",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--json", action="store_true", help="ls: print the answer as JSON")
    add_client_arguments(parser)


ACTIONS = ("add", "rm", "ls")


def run(args: argparse.Namespace) -> int:
    args.action = canonical(args.action, ACTIONS)
    if args.action == "ls" and args.node:
        return _usage("'ls' takes no node")
    if args.action != "ls" and not args.node:
        return _usage(f"'{args.action}' needs at least one node host:port")
    for node in args.node:
        try:
            parse_node_address(node)
        except ValueError as e:
            return _usage(str(e))
    if args.timeout <= 0:
        return _usage("--timeout must be greater than 0")
    try:
        options = client_options(args)
    except ConfigError as e:
        return _usage(str(e))
    return asyncio.run(_run(args, options))


def _usage(message: str) -> int:
    print(f"fnlb nodes: error: {message}", file=sys.stderr)
    return 2


async def _run(args: argparse.Namespace, options: ClientOptions) -> int:
    failed = 0
    async with client_session(options, args.timeout) as s:
        if args.action == "ls":
            try:
                answer = await call(s, "GET", args.mgmt, "/1/lb/nodes")
            except PeerError as e:
                print(f"fnlb nodes: {e}", file=sys.stderr)
                return 1
            nodes = answer.get("nodes", {})
            if args.json:
                print(json.dumps(answer, indent=2, sort_keys=True))
            elif not nodes:
                print("no nodes")
            else:
                print(table(["node", "state"], sorted(nodes.items())))
            return 0
        method = "PUT" if args.action == "add" else "DELETE"
        for node in args.node:
            try:
                answer = await call(s, method, args.mgmt, "/1/lb/nodes", {"node": node})
            except PeerError as e:
                failed += 1
                print(f"fnlb nodes: {node}: {e}", file=sys.stderr)
                continue
            held = f" (held by {answer['held_by']} peers)" if "held_by" in answer else ""
            print(f"{node}: {answer.get('msg', 'ok')}{held}")
    return 1 if failed else 0
