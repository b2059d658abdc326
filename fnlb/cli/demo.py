"""`fnlb demo`: a cluster of fnlb peers in front of emulated Fn nodes, calls, and agreement.

Everything runs in this one process on loopback: `--fn-nodes` emulated Fn servers on
consecutive ports from `--fn-port`, and `--peers` fnlb peers gossiping with each other
(encrypted with a key made for the demo). Peer i takes calls on `--port + 2i`, answers the
management API on `--port + 2i + 1` and gossips on `--port + 2 x peers + i` (8081-8089 by
default; the Fn nodes are on 18080 up). The nodes are added through one peer's API; every peer
learns them by gossip. Two bursts of calls, spread over the peers as DNS would spread clients,
show that each function lands on the same Fn node whichever peer takes the call, so after the
first burst most calls find a hot container. During the first burst the peers learn its load
and place the hottest functions' homes (docs/routing.md), all alike; a function moved then
shows on two nodes in that burst, and the second burst runs on the placed homes. Then the
peers' views are compared (as `fnlb cluster status` does) and the demo stays up with its
addresses printed (Ctrl-C stops it), unless `--exit` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from fnlb.config import Settings
from fnlb.fnsim.cluster import start_nodes
from fnlb.fnsim.options import FnSimOptions
from fnlb.logs import setup_logging
from fnlb.routing.placement import EPOCH_MS
from fnlb.server import Balancer

BURST_ROOM_S = 8.0
"""Time kept free of a placement epoch's turn for the second burst (it takes 1-2 s)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address everything listens on")
    parser.add_argument(
        "--port", type=int, default=8081, help="first fnlb port (0: free ports everywhere)"
    )
    parser.add_argument("--peers", type=int, default=3, help="how many fnlb peers")
    parser.add_argument("--fn-port", type=int, default=18080, help="first emulated Fn node port")
    parser.add_argument("--fn-nodes", type=int, default=3, help="how many emulated Fn nodes")
    parser.add_argument("--functions", type=int, default=12, help="distinct functions called")
    parser.add_argument("--calls", type=int, default=300, help="calls in each of the 2 bursts")
    parser.add_argument("--cold-start-ms", type=float, default=300.0, help="emulated cold start")
    parser.add_argument("--seed", type=int, default=7, help="seed of the call mix")
    parser.add_argument("--exit", action="store_true", help="exit after the bursts")


@dataclass
class Burst:
    calls: Counter[str]
    cold: Counter[str]
    homes: dict[str, set[str]]
    errors: int


async def burst(
    session: aiohttp.ClientSession, bases: list[str], functions: list[str], calls: int, seed: int
) -> Burst:
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** 1.1 for i in range(len(functions))]  # Zipf-like popularity
    picks = rng.choices(functions, weights, k=calls)
    result = Burst(Counter(), Counter(), {}, 0)
    limit = asyncio.Semaphore(4)

    async def call(i: int, fn: str) -> None:
        base = bases[i % len(bases)]  # clients spread over the peers, as DNS would
        async with limit:
            try:
                async with session.post(f"{base}/r/demo/{fn}?ms=10", data=b"{}") as resp:
                    await resp.read()
                    node = resp.headers.get("Fnsim-Node", "?")
                    if resp.status != 200:
                        result.errors += 1
                        return
            except aiohttp.ClientError:
                result.errors += 1
                return
        result.calls[node] += 1
        if resp.headers.get("Fnsim-Cold") == "true":
            result.cold[node] += 1
        result.homes.setdefault(fn, set()).add(node)

    await asyncio.gather(*(call(i, fn) for i, fn in enumerate(picks)))
    return result


def report(title: str, b: Burst, nodes: list[str]) -> str:
    total = sum(b.calls.values())
    cold = sum(b.cold.values())
    lines = [f"{title}: {total} calls, {cold} cold ({cold / max(total, 1):.0%}), {b.errors} errors"]
    lines.append(f"  {'Fn node':<22}{'calls':>7}{'cold':>6}{'functions':>11}")
    for node in nodes:
        owned = sum(1 for homes in b.homes.values() if node in homes)
        lines.append(f"  {node:<22}{b.calls[node]:>7}{b.cold[node]:>6}{owned:>11}")
    spread = sum(len(h) for h in b.homes.values()) / max(len(b.homes), 1)
    lines.append(f"  nodes per function: {spread:.2f} (1.00 = every function on one node)")
    return "\n".join(lines)


def peer_settings(args: argparse.Namespace, i: int, key: str, seed: str) -> Settings:
    def addr(offset: int) -> str:
        return f"{args.host}:{args.port + offset if args.port else 0}"

    return Settings(
        listen=addr(2 * i),
        mgmt_listen=addr(2 * i + 1),
        gossip_listen=addr(2 * args.peers + i),
        join=(seed,) if seed else (),
        node_name=f"peer{i}",
        gossip_key=key,
        hc_interval=1.0,
        log_level="warning",
    )


async def start_peers(args: argparse.Namespace, peers: list[Balancer]) -> None:
    """Start the peers into `peers` (the caller's list, so that it stops those that started
    even when a later one cannot bind its port)."""
    key = base64.b64encode(os.urandom(32)).decode()
    seed = ""
    for i in range(args.peers):
        peer = Balancer(peer_settings(args, i, key, seed))
        peers.append(peer)
        await peer.start()
        if not seed:
            assert peer.gossip is not None
            assert peer.gossip.bound is not None
            seed = f"{args.host}:{peer.gossip.bound[1]}"


async def wait_until(check: Callable[[], bool], seconds: float) -> bool:
    for _ in range(int(seconds / 0.05)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


async def settle_homes(peers: list[Balancer]) -> int:
    """Wait until every peer has placed the same homes, clear of the next epoch's placement.

    Homes are placed once the first burst's load has settled, and again at every epoch
    (wall-clock multiples of EPOCH_MS, read 1-2 s late through the settled cut). If the
    second burst could straddle that, let the placement happen first. How many are placed
    (0: none, too little load; -1: the peers still place differently).

    Peers that read the settled load a tick apart may place differently at one epoch; they
    read the same cut at the next, so the wait covers one epoch more (a loaded machine).
    """

    def homes() -> list[dict[str, str]]:
        return [p.peer.control.homes for p in peers]

    def placed() -> bool:
        first, *rest = homes()
        return bool(first) and all(h == first for h in rest)

    if not await wait_until(placed, EPOCH_MS / 1000 + 5):
        # no load to place anything (the homes stay rendezvous's), or peers still apart
        return -1 if any(homes()) else 0
    epoch_s = EPOCH_MS / 1000
    left = epoch_s - time.time() % epoch_s + 1.0  # until the settled cut turns the epoch
    if left < BURST_ROOM_S:
        await asyncio.sleep(left + 1.5)  # every peer ticks within a second of the turn
        await wait_until(placed, 10)

    def workers_have_them() -> bool:  # a peer's workers get its homes at the pool's tick
        return all(p.workers is None or p.workers.sent_homes(p.peer.control.homes)
                   for p in peers)  # fmt: skip

    await wait_until(workers_have_them, 5)
    await asyncio.sleep(0.1)  # and read them from their link
    return len(homes()[0])


async def run_demo(args: argparse.Namespace) -> int:
    fn = await start_nodes(
        args.fn_nodes, host=args.host, port=args.fn_port,
        options=FnSimOptions(cold_start_ms=args.cold_start_ms),
    )  # fmt: skip
    peers: list[Balancer] = []
    try:
        await start_peers(args, peers)
        await wait_until(lambda: all(p.cluster and len(p.peer.state.alive) == len(peers)
                                     for p in peers), 10)  # fmt: skip
        async with aiohttp.ClientSession() as session:
            mgmt0 = f"http://{peers[0].mgmt_address}"
            for node in fn.addresses:
                async with session.put(f"{mgmt0}/1/lb/nodes", json={"node": node}) as resp:
                    answer = await resp.json()
                    print(f"PUT {node} on peer0: {answer}")
            ready = await wait_until(
                lambda: all(len(p.peer.view.routable) == args.fn_nodes for p in peers), 10
            )
            if not ready:
                print("the peers did not all see the nodes online in time", file=sys.stderr)
            bases = [f"http://{p.listen_address}" for p in peers]
            functions = [f"fn{i:02d}" for i in range(args.functions)]
            workers = peers[0].workers.count if peers[0].workers is not None else 1
            print(
                f"\n{len(peers)} fnlb peers ({', '.join(str(p.listen_address) for p in peers)}) "
                f"in front of Fn nodes {', '.join(fn.addresses)}; calls spread over the peers; "
                f"each peer serves calls with {workers} worker process(es) (-workers)"
            )
            first = await burst(session, bases, functions, args.calls, args.seed)
            print(report("burst 1 (containers start cold)", first, fn.addresses))
            placed = await settle_homes(peers)
            if placed > 0:
                print(
                    f"homes placed for the {placed} hottest functions from burst 1's load, "
                    "alike on every peer (their memory spread evenly over the nodes)"
                )
            elif placed < 0:
                print("the peers still place homes differently (a loaded machine?)")
            else:
                print("no homes placed: too little load (every function keeps its hash home)")
            second = await burst(session, bases, functions, args.calls, args.seed + 1)
            print(report("burst 2 (same functions, same homes)", second, fn.addresses))
            agree = await print_agreement(session, peers)
        errors = first.errors + second.errors
        mgmt_flags = " ".join(f"--mgmt http://{p.mgmt_address}" for p in peers)
        print(
            "\nthe cluster is running:\n"
            f"  calls:      curl -X POST {bases[0]}/r/demo/hello   (any peer)\n"
            f"  nodes:      curl {mgmt0}/1/lb/nodes\n"
            f"  agreement:  fnlb cluster status {mgmt_flags}\n"
            f"  Fn nodes:   {' '.join(fn.addresses)}"
        )
        if args.exit:
            return 1 if errors or not agree else 0
        print("Ctrl-C to stop.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        for peer in reversed(peers):
            with contextlib.suppress(Exception):
                await peer.stop()
        await fn.close()


async def print_agreement(session: aiohttp.ClientSession, peers: list[Balancer]) -> bool:
    """The last lines of `fnlb cluster status`: one checksum per peer, equal when they agree."""
    checksums = set()
    print("\npeer      routable nodes  checksum")
    for p in peers:
        async with session.get(f"http://{p.mgmt_address}/1/lb/cluster") as resp:
            report = await resp.json()
        checksums.add(report["checksum"])
        routable = sum(n["routable_here"] for n in report["nodes"])
        print(f"{report['self']:<10}{routable:>14}  {report['checksum']}")
    agree = len(checksums) == 1
    print("all peers agree" if agree else "PEERS DISAGREE")
    return agree


def run(args: argparse.Namespace) -> int:
    setup_logging("warning")
    try:
        return asyncio.run(run_demo(args))
    except OSError as e:
        print(f"fnlb demo: {e} (is another demo running? pick ports with --port/--fn-port, or 0)",
              file=sys.stderr)  # fmt: skip
        return 1
