"""The `fnlb` command: `serve` (the default, with the original fnlb's flags) and its tools.

`fnlb -listen :8081 -nodes a:8080,b:8080` works as the original did; the first word, when it
names a subcommand, picks another tool (`fnlb demo`, `fnlb fnsim`, ...). Each subcommand lives
in its own module and is imported only when used, so `fnlb serve` starts quickly.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from fnlb import __version__

#: subcommand -> (module, one-line description). Each module has
#: `add_arguments(parser)` and `run(args) -> int`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("fnlb.cli.serve", "run the load balancer (the default; original fnlb flags)"),
    "demo": ("fnlb.cli.demo", "start emulated Fn nodes and fnlb on loopback and show calls routed"),
    "fnsim": ("fnlb.cli.fnsim", "run emulated Fn servers (hot/cold containers, memory, 503 busy)"),
    "keygen": ("fnlb.cli.keygen", "make a gossip encryption key (base64) or a keyring file"),
    "keys": ("fnlb.cli.keys", "rotate gossip keys on running peers: install, use, remove, list"),
    "nodes": ("fnlb.cli.nodes", "add, remove or list Fn nodes on a running fnlb"),
    "cluster": ("fnlb.cli.cluster", "cluster status: peers, nodes, verdicts, agreement"),
}


class _Parser(argparse.ArgumentParser):
    """Exit 2 with a one-line message naming the problem and pointing to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n(see '{self.prog} --help')\n")


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return _Parser(prog=prog, description=description, allow_abbrev=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        print(_overview())
        return 0
    if args and args[0] in ("--version", "-version", "version"):
        print(f"fnlb {__version__}")
        return 0
    name = "serve"
    if args and args[0] in SUBCOMMANDS:
        name = args.pop(0)
    elif args and not args[0].startswith("-"):
        print(f"fnlb: unknown command {args[0]!r}\n\n{_overview()}", file=sys.stderr)
        return 2
    module_name, description = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = make_parser(f"fnlb {name}", description)
    module.add_arguments(parser)
    parsed = parser.parse_args(args)
    run: Callable[[argparse.Namespace], int] = module.run
    return run(parsed)


def _overview() -> str:
    lines = [f"fnlb {__version__}: a clustered load balancer for Fn servers", "", "commands:"]
    lines += [f"  {name:<8} {desc}" for name, (_, desc) in SUBCOMMANDS.items()]
    lines += ["", "'fnlb COMMAND --help' for a command's flags; with no command, 'serve'."]
    return "\n".join(lines)
