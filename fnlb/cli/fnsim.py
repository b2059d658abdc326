"""`fnlb fnsim`: run emulated Fn servers until SIGINT or SIGTERM.

    fnlb fnsim --listen 127.0.0.1:8080 --count 3 --cold-start-ms 500 --no-wait-header

Every FnSimOptions field is a flag generated from the dataclass (defaults written once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import Callable
from typing import Any

from fnlb.config import parse_listen
from fnlb.fnsim.cluster import start_nodes
from fnlb.fnsim.options import FnSimOptions, option_fields

_PARSER = "_fnsim_parser"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--listen`, `--count` and one flag per FnSimOptions field."""
    parser.add_argument(
        "--listen",
        "-listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="address of the first node; port 0 picks free ports (default: 127.0.0.1:8080)",
    )
    parser.add_argument(
        "--count",
        "-count",
        type=int,
        default=1,
        metavar="N",
        help="number of nodes, on consecutive ports (default: 1)",
    )
    for f in option_fields():
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {f.default!r})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": f.default, "help": help_text}
        kind = str(f.type)
        if kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = {"int": int, "float": float, "str": str}.get(kind.split(" |")[0], str)
            kwargs["metavar"] = f.name.rsplit("_", 1)[-1].upper()
        parser.add_argument(flag, **kwargs)
    parser.set_defaults(**{_PARSER: parser})


def options_from(args: argparse.Namespace) -> FnSimOptions:
    """The FnSimOptions named by parsed flags; ValueError naming the flag if they can't work."""
    values = {f.name: getattr(args, f.name) for f in option_fields() if hasattr(args, f.name)}
    options = FnSimOptions(**values)
    try:
        options.check()
    except ValueError as e:
        message = str(e)
        for name in sorted((f.name for f in option_fields()), key=len, reverse=True):
            message = message.replace(name, "--" + name.replace("_", "-"))
        raise ValueError(message) from None
    return options


def run(args: argparse.Namespace) -> int:
    """Start the nodes, print their addresses, serve until SIGINT/SIGTERM; 0 on a clean stop."""
    parser: argparse.ArgumentParser | None = getattr(args, _PARSER, None)
    try:
        options = options_from(args)
        host, port = parse_listen(args.listen)
        if args.count < 1:
            raise ValueError("--count must be at least 1")
        if port and port + args.count - 1 > 65535:
            raise ValueError(f"--count {args.count} from port {port} goes past 65535")
    except ValueError as e:
        message = str(e) if str(e).startswith("--") else f"--listen: {e}"
        if parser is not None:
            parser.error(message)
        print(f"fnlb fnsim: error: {message}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_serve(args.count, host or "0.0.0.0", port, options))
    except OSError as e:
        print(f"fnlb fnsim: cannot listen on {args.listen}: {e}", file=sys.stderr)
        return 1


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (a hot call costs less CPU), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _serve(count: int, host: str, port: int, options: FnSimOptions) -> int:
    cluster = await start_nodes(count, host, port, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        knobs = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(options).items())
        print(f"fnsim: {count} Fn node(s) ({knobs})", file=sys.stderr, flush=True)
        for address in cluster.addresses:
            print(address, flush=True)
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await cluster.close()
    return 0
