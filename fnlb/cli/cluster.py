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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import aiohttp

from fnlb.cli.mgmt_client import DEFAULT_MGMT, PeerError, call


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


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        print("fnlb cluster: error: --timeout must be greater than 0", file=sys.stderr)
        return 2
    urls: list[str] = args.mgmt or [DEFAULT_MGMT]
    reports = asyncio.run(_fetch_all(urls, args.timeout))
    errors = {u: r for u, r in reports.items() if isinstance(r, str)}
    ok = {u: r for u, r in reports.items() if not isinstance(r, str)}
    agree = len({r["checksum"] for r in ok.values()}) <= 1
    if args.json:
        load_agree = len({r.get("load_checksum") for r in ok.values()}) <= 1
        answer = {"agree": agree and not errors, "load_agree": load_agree, "peers": reports}
        print(json.dumps(answer, indent=2))
    else:
        print(format_status(ok, agree, errors))
    for url, error in errors.items():
        print(f"fnlb cluster: {url}: {error}", file=sys.stderr)
    return 0 if ok and agree and not errors else 1


async def _fetch_all(urls: list[str], seconds: float) -> dict[str, dict[str, Any] | str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as s:

        async def one(url: str) -> dict[str, Any] | str:
            try:
                return await call(s, "GET", url, "/1/lb/cluster")
            except PeerError as e:
                return str(e)

        answers = await asyncio.gather(*(one(u) for u in urls))
    return dict(zip(urls, answers, strict=True))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in
              enumerate(headers)]  # fmt: skip
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


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
    return [head, _table(["node", "role", "protected", "functions"], rows)]


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
        _table(
            ["name", "address", "state", "incarnation"],
            [[p["name"], p["address"], p["state"], str(p["incarnation"])] for p in first["peers"]],
        )
    )
    names = [p["name"] for p in first["peers"]]
    out.append("\nnodes:")
    out.append(
        _table(
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
            _table(
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
        _table(
            ["peer", "self", "version", "checksum", "load"],
            [
                [u, r["self"], str(r["version"]), r["checksum"], r.get("load_checksum", "-")]
                for u, r in reports.items()
            ]
            + [[u, "-", "-", "unreachable", "-"] for u in errors or {}],
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
    return "\n".join(out)
