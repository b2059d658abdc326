"""`fnlb serve`: the load balancer, with every flag of the original fnlb."""

from __future__ import annotations

import argparse
import asyncio
import sys

from fnlb.config import Settings, add_settings_arguments, settings_from
from fnlb.errors import ConfigError
from fnlb.logs import setup_logging
from fnlb.redact import redact_urls


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)


def check_supported(settings: Settings) -> None:
    """Refuse settings that cannot work before anything starts: management security (tokens,
    TLS, the open-API rule) and the node source (-db)."""
    from fnlb.api.security import validate_security

    validate_security(settings)
    check_node_source(settings)


def check_node_source(settings: Settings) -> None:
    """Refuse a -db that cannot work before anything starts (ConfigError naming the flag)."""
    import os

    from fnlb.discovery.db_url import parse_db

    choice = parse_db(settings.db)
    if choice.kind == "k8s":
        from fnlb.discovery.k8s_config import api_access

        if settings.nodes:
            raise ConfigError("-nodes: not used with -db=k8s (Kubernetes owns the node list)")
        api_access(settings.kubeconfig, settings.namespace, os.environ)
    elif choice.kind == "sqlite":
        if settings.cluster_mode:
            raise ConfigError(
                "-db=sqlite3:///file: a cluster peer keeps its node list with -state-dir DIR; "
                "drop -db"
            )
        from fnlb.discovery.sqlite_nodes import NodeFile

        NodeFile(choice.path).close()


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
        check_supported(settings)
    except ConfigError as e:
        print(f"fnlb: {redact_urls(str(e))}", file=sys.stderr)  # a -db URL's password
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
