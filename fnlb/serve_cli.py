"""`fnlb serve`: the load balancer, with every flag of the original fnlb."""

from __future__ import annotations

import argparse
import asyncio
import sys

from fnlb.config import Settings, add_settings_arguments, settings_from
from fnlb.errors import ConfigError
from fnlb.logs import setup_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)


def check_supported(settings: Settings) -> None:
    """Refuse settings for features that are not built, rather than ignore them."""
    if settings.db == "k8s":
        raise ConfigError("-db=k8s: Kubernetes discovery is not built yet; list nodes with -nodes")
    if not settings.db.startswith("sqlite3://"):
        raise ConfigError(
            f"-db={settings.db}: fnlb keeps its node list itself and needs no SQL database; "
            "drop -db (or use the default sqlite3://:memory:)"
        )


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
        check_supported(settings)
    except ConfigError as e:
        print(f"fnlb: {e}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    from fnlb.server import serve

    try:
        import uvloop

        runner: asyncio.Runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.Runner()
    with runner:
        try:
            return runner.run(serve(settings))
        except OSError as e:
            print(f"fnlb: cannot listen: {e}", file=sys.stderr)
            return 1
