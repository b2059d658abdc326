"""`fnlb cluster status`: do the peers agree? Peers, nodes, hot functions, checksums.

Asks every `--mgmt` peer for `GET /1/lb/cluster` at once and prints, from the first peer that
answered, the peers and the nodes (the cluster's verdict and each peer's own), then one line
per peer queried with its view's version, checksum (or "unreachable") and settled load
checksum: equal checksums mean the peers agree on members, nodes and health, what every
routing reads; the load checksum covers the load-based widths, which may differ for about a
second while traffic changes, so it is shown but does not decide agreement. Agreement is
claimed only when every peer queried answered. `--json` prints the raw answers instead. Exit 0
when every peer answered and all agree, 1 when a peer could not be reached or the checksums
differ, 2 for bad arguments.

`--watch [SECONDS]` asks again every SECONDS (default 2) until interrupted, or `--count` times;
the exit status is the last round's. A peer running alone (no `--join`/`--gossip-listen`)
answers that it is not in cluster mode, and the command says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from fnlb.cli.mgmt_client import (
    DEFAULT_MGMT,
    ClientOptions,
    PeerError,
    add_client_arguments,
    call,
    client_options,
    client_session,
)
from fnlb.cli.output import table
from fnlb.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("status",), help="status: what the peers see")
    parser.add_argument(
        "--mgmt",
        action="append",
        metavar="URL",
        help=f"management API of a peer; repeat for each (default: {DEFAULT_MGMT})",
    )
    parser.add_argument("--json", action="store_true", help="print the answers as JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per peer")
    parser.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=2.0,
        default=None,
        metavar="SECONDS",
        help="ask again every SECONDS (default 2) until interrupted",
    )
    parser.add_argument(
        "--count", type=int, default=0, help="with --watch: stop after this many rounds"
    )
    add_client_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        print("fnlb cluster: error: --timeout must be greater than 0", file=sys.stderr)
        return 2
    if args.watch is not None and args.watch <= 0:
        print("fnlb cluster: error: --watch must be greater than 0", file=sys.stderr)
        return 2
    if args.count < 0:
        print("fnlb cluster: error: --count must not be negative", file=sys.stderr)
        return 2
    try:
        options = client_options(args)
    except ConfigError as e:
        print(f"fnlb cluster: error: {e}", file=sys.stderr)
        return 2
    urls: list[str] = args.mgmt or [DEFAULT_MGMT]
    rounds = 0
    try:
        while True:
            if args.watch is not None and not args.json and sys.stdout.isatty():
                print("\033[H\033[2J", end="")  # a terminal: redraw in place
            elif rounds:
                print()
            code = _status_once(urls, args, options)
            rounds += 1
            if args.watch is None or (args.count and rounds >= args.count):
                return code
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return code if rounds else 130


def _status_once(urls: list[str], args: argparse.Namespace, options: ClientOptions) -> int:
    reports = asyncio.run(_fetch_all(urls, args.timeout, options))
    lone = [u for u, r in reports.items() if r == NOT_CLUSTERED]
    if lone and len(lone) == len(reports):
        if args.json:
            print(json.dumps({"clustered": False, "agree": None, "peers": {}}, indent=2))
        for url in lone:
            print(
                f"{url}: not in cluster mode (this fnlb runs alone: started without --join or "
                "--gossip-listen); there are no peers to compare. 'fnlb nodes ls' shows its nodes.",
                file=sys.stderr if args.json else sys.stdout,
            )
        return 1
    reports = {u: ("not in cluster mode" if r == NOT_CLUSTERED else r) for u, r in reports.items()}
    errors = {u: r for u, r in reports.items() if isinstance(r, str)}
    ok = {u: r for u, r in reports.items() if not isinstance(r, str)}
    agree = len({r["checksum"] for r in ok.values()}) <= 1
    if args.json:
        load_agree = len({r.get("load_checksum") for r in ok.values()}) <= 1
        answer = {
            "clustered": True,
            "agree": agree and not errors,
            "load_agree": load_agree,
            "placement_agree": _placements_agree(ok),
            "peers": reports,
        }
        print(json.dumps(answer, indent=2))
    else:
        print(format_status(ok, agree, errors))
    for url, error in errors.items():
        print(f"fnlb cluster: {url}: {error}", file=sys.stderr)
    return 0 if ok and agree and not errors else 1


NOT_CLUSTERED = "\0not in cluster mode"
"""What `_fetch_all` gives for a peer that answered 404 saying it runs alone (no error text
starts with a NUL, so another peer's error never equals it)."""


async def _fetch_all(
    urls: list[str], seconds: float, options: ClientOptions
) -> dict[str, dict[str, Any] | str]:
    async with client_session(options, seconds) as s:

        async def one(url: str) -> dict[str, Any] | str:
            try:
                return await call(s, "GET", url, "/1/lb/cluster")
            except PeerError as e:
                if e.status == 404 and (e.msg or "").startswith("not in cluster mode"):
                    return NOT_CLUSTERED
                return str(e)

        answers = await asyncio.gather(*(one(u) for u in urls))
    return dict(zip(urls, answers, strict=True))


def _placement_lines(placement: Any) -> list[str]:
    """Issue 16: the protected set (per node) and the tail's nodes, from `"placement"`."""
    if not isinstance(placement, dict):
        return []
    protected = placement.get("protected") or {}
    tail = placement.get("tail_nodes") or []
    if not protected and not tail:
        return ["\nplacement: nothing placed yet (too little load)"]
    per_node: dict[str, list[str]] = {}
    for fn, node in protected.items():
        per_node.setdefault(node, []).append(fn)
    head = f"\nplacement: {len(protected)} functions protected; tail nodes: " + (
        ", ".join(tail) if tail else "none (placed homes of the hottest only)"
    )
    rows = [
        [node, "tail" if node in tail else "protected", str(len(fns)), " ".join(sorted(fns)[:4])
         + (" ..." if len(fns) > 4 else "")]
        for node, fns in sorted(per_node.items())
    ]  # fmt: skip
    rows += [[node, "tail", "0", ""] for node in tail if node not in per_node]
    return [head, table(["node", "role", "protected", "functions"], rows)]


def format_status(
    reports: dict[str, dict[str, Any]], agree: bool, errors: dict[str, str] | None = None
) -> str:
    """The human view of `/1/lb/cluster` answers (see the module docstring).

    `errors`: the peers that could not be asked (URL to reason). Agreement is claimed only
    when every peer queried answered: an unreachable peer may see anything.
    """
    if not reports:
        return "no peer answered"
    first = next(iter(reports.values()))
    out = [f"peers (as {first.get('self')} sees them):"]
    out.append(
        table(
            ["name", "address", "state", "incarnation"],
            [[p["name"], p["address"], p["state"], str(p["incarnation"])] for p in first["peers"]],
        )
    )
    names = [p["name"] for p in first["peers"]]
    out.append("\nnodes:")
    out.append(
        table(
            ["node", "cluster", *names],
            [
                [n["address"], n["cluster"], *(n["verdicts"].get(p, "-") for p in names)]
                for n in first["nodes"]
            ],
        )
    )
    hot = first.get("hot_functions") or []
    if hot:
        out.append("\nhot functions:")
        out.append(
            table(
                ["function", "calls/s", "in flight", "nodes"],
                [
                    [h["function"], f"{h['rate']:.1f}", str(h["in_flight"]), " ".join(h["nodes"])]
                    for h in hot
                ],
            )
        )
    scale = first.get("scale")
    if scale:
        out.append(
            f"\nscale: {scale['recommendation']} - {scale['desired_nodes']} Fn nodes wanted, "
            f"{scale['current_nodes']} now ({scale['needed_containers']} containers needed"
            + (", panic" if scale.get("panic") else "")
            + ")"
        )
    out.extend(_placement_lines(first.get("placement")))
    out.append("\nagreement:")
    out.append(
        table(
            ["peer", "self", "version", "checksum", "load", "placement"],
            [
                [
                    u,
                    r["self"],
                    str(r["version"]),
                    r["checksum"],
                    r.get("load_checksum", "-"),
                    _placement_digest(r) or "-",
                ]
                for u, r in reports.items()
            ]
            + [[u, "-", "-", "unreachable", "-", "-"] for u in errors or {}],
        )
    )
    if not agree:
        out.append("PEERS DISAGREE: their views differ")
    elif errors:
        asked = len(reports) + len(errors)
        out.append(f"{len(reports)} of {asked} peers answered; agreement not confirmed")
    else:
        out.append("all peers agree on members, nodes and health")
    if len({r.get("load_checksum") for r in reports.values()}) > 1:
        out.append(
            "load figures differ (load-based widths settle within about a second; "
            "docs/routing.md, the shared load model)"
        )
    if not _placements_agree(reports):
        out.append(
            "placements differ (each peer takes the lowest ranked at its next push-pull, and a "
            "peer crossing an epoch places a moment before another; docs/routing.md, After a "
            "restart)"
        )
    return "\n".join(out)


def _placement_digest(report: dict[str, Any]) -> str | None:
    placement = report.get("placement")
    digest = placement.get("digest") if isinstance(placement, dict) else None
    return digest if isinstance(digest, str) else None


def _placements_agree(reports: dict[str, dict[str, Any]]) -> bool:
    """Equal placement digests where peers report one (admission off or nothing placed: no
    digest, nothing to compare)."""
    return len({d for r in reports.values() if (d := _placement_digest(r)) is not None}) <= 1
