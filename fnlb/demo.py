"""`fnlb demo`: emulated Fn nodes with fnlb in front, a burst of calls, and where they went.

Everything runs in this one process on loopback: `--fn-nodes` emulated Fn servers on
consecutive ports from `--fn-port`, and fnlb on `--listen`/`--mgmt-listen`. Two bursts of
calls over a few dozen functions (a few hot, most rare) show that each function stays on one
node, so after the first burst most calls find a hot container. The demo then stays up with
its addresses printed (Ctrl-C stops it), unless `--exit` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
from collections import Counter
from dataclasses import dataclass

import aiohttp

from fnlb.config import Settings
from fnlb.fnsim.cluster import start_nodes
from fnlb.fnsim.options import FnSimOptions
from fnlb.logs import setup_logging
from fnlb.server import Balancer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:8081", help="fnlb traffic address")
    parser.add_argument("--mgmt-listen", default="127.0.0.1:8082", help="fnlb management API")
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
    session: aiohttp.ClientSession, base: str, functions: list[str], calls: int, seed: int
) -> Burst:
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** 1.1 for i in range(len(functions))]  # Zipf-like popularity
    picks = rng.choices(functions, weights, k=calls)
    result = Burst(Counter(), Counter(), {}, 0)
    limit = asyncio.Semaphore(4)

    async def call(fn: str) -> None:
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

    await asyncio.gather(*(call(fn) for fn in picks))
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


async def run_demo(args: argparse.Namespace) -> int:
    fn = await start_nodes(
        args.fn_nodes, port=args.fn_port, options=FnSimOptions(cold_start_ms=args.cold_start_ms)
    )
    balancer = Balancer(
        Settings(
            listen=args.listen,
            mgmt_listen=args.mgmt_listen,
            nodes=",".join(fn.addresses),
            hc_interval=1.0,
            log_level="warning",
        )
    )
    try:
        await balancer.start()
        for _ in range(200):
            if len(balancer.registry.view.routable) == args.fn_nodes:
                break
            await asyncio.sleep(0.02)
        base = f"http://{balancer.listen_address}"
        functions = [f"fn{i:02d}" for i in range(args.functions)]
        print(f"fnlb {balancer.listen_address} in front of Fn nodes {', '.join(fn.addresses)}")
        async with aiohttp.ClientSession() as session:
            first = await burst(session, base, functions, args.calls, args.seed)
            print(report("burst 1 (containers start cold)", first, fn.addresses))
            second = await burst(session, base, functions, args.calls, args.seed + 1)
            print(report("burst 2 (same functions, same homes)", second, fn.addresses))
        errors = first.errors + second.errors
        print(
            "\nfnlb is running:\n"
            f"  calls:      curl -X POST {base}/r/demo/hello\n"
            f"  nodes:      curl http://{balancer.mgmt_address}/1/lb/nodes\n"
            f"  stats:      curl http://{balancer.mgmt_address}/1/lb/stats\n"
            f"  Fn nodes:   {' '.join(fn.addresses)}"
        )
        if args.exit:
            return 1 if errors else 0
        print("Ctrl-C to stop.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        with contextlib.suppress(Exception):
            await balancer.stop()
        await fn.close()


def run(args: argparse.Namespace) -> int:
    setup_logging("warning")
    try:
        return asyncio.run(run_demo(args))
    except OSError as e:
        print(f"fnlb demo: {e} (is another demo running? pick ports with --listen/--fn-port)",
              file=sys.stderr)  # fmt: skip
        return 1
