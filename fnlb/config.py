"""Settings for `fnlb serve`: one dataclass, from which flags and environment variables derive.

Every default is written once, here. The command line accepts each field as a flag in the
original fnlb's spelling (Go's `flag` package: `-listen` and `--listen`, `-listen=x` and
`-listen x` all work), and each field can also come from an environment variable
`FNLB_<FIELD>` (e.g. `FNLB_HC_INTERVAL=5`); `LOG_LEVEL` sets the log level as in the original.
Precedence: flag, then environment, then default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fnlb.addresses import (
    DEFAULT_GOSSIP_PORT,
    collector_url,
    parse_listen,
    parse_node_address,
    parse_peer,
)
from fnlb.errors import ConfigError
from fnlb.goduration import parse_go_duration_ns

__all__ = [
    "DEFAULT_GOSSIP_PORT",
    "Settings",
    "parse_listen",
    "parse_node_address",
    "parse_peer",
]


def _opt(default: Any, help: str, *, metavar: str | None = None, env: str | None = None) -> Any:
    return field(default=default, metadata={"help": help, "metavar": metavar, "env": env})


def _list_opt(help: str, *, metavar: str | None = None) -> Any:
    return field(default_factory=tuple, metadata={"help": help, "metavar": metavar, "list": True})


@dataclass(frozen=True, slots=True)
class Settings:
    """What one fnlb process is told at start. Units are in each field's help."""

    listen: str = _opt(":8081", "address for calls, [host]:port (empty host: all interfaces)")
    mgmt_listen: str = _opt(
        ":8081",
        "address of the management API /1/lb/...; when it differs from -listen the traffic "
        "port serves only calls and this one only the API",
    )
    nodes: str = _opt(
        "",
        "comma-separated Fn nodes host:port to start with; a fresh cluster peer adds only "
        "those the cluster has no record of, deleted ones included (docs/cluster.md)",
    )
    db: str = _opt(
        "sqlite3://:memory:",
        "node store: sqlite3://:memory: keeps the list in memory (peers share it by gossip), "
        "sqlite3:///path/file.db in that file across restarts (lone fnlb), k8s follows the "
        "Kubernetes pods matching -label-selector (docs/kubernetes.md)",
    )
    min_api_version: str = _opt(
        "0.0.235", "nodes whose /version is lower (semver) are unhealthy", metavar="VERSION"
    )
    hc_interval: float = _opt(
        3.0,
        "seconds between active health checks of each node (each also reads the node's "
        "/metrics; a reading is used for 5 intervals, at least 15 s)",
    )
    hc_path: str = _opt("/version", "path of the health check (answers JSON {version})")
    hc_unhealthy: int = _opt(2, "consecutive failed checks before a node goes offline")
    hc_healthy: int = _opt(1, "consecutive good checks before a node comes back online")
    hc_timeout: float = _opt(5.0, "seconds before a health check counts as failed")
    shutdown_timeout: float = _opt(
        0.0, "seconds to let in-flight calls finish after SIGTERM/SIGINT before exiting"
    )
    zipkin: str = _opt(
        "",
        "Zipkin collector URL: a span per call and per attempt goes there (/api/v1/spans gets "
        "v1 JSON, any other path v2; docs/observability.md)",
        metavar="URL",
    )
    trace_sample_rate: float = _opt(
        1.0, "share of calls traced (0-1) when the caller sent no sampling decision", metavar="RATE"
    )
    namespace: str = _opt("", "Kubernetes namespace to watch (default: fnlb's own)")
    label_selector: str = _opt("", "Kubernetes label selector of Fn pods", metavar="SELECTOR")
    target_port: int = _opt(8080, "port of the Fn server in each Kubernetes pod")
    kubeconfig: str = _opt(
        "",
        "kubeconfig file for -db=k8s outside a cluster (in a pod: its service account)",
        metavar="FILE",
        env="KUBECONFIG",
    )
    connect_timeout: float = _opt(
        2.0, "seconds to open a connection to an Fn node before trying the next one"
    )
    log_level: str = _opt(
        "info", "trace, debug, info, warn(ing), error, fatal or panic", env="LOG_LEVEL"
    )
    log_format: str = _opt("text", "text (logfmt: key=value, quoted) or json (one object a line)")
    access_log: bool = _opt(False, "log one line per call (method, path, node, status, times)")
    call_metrics: bool = _opt(
        True, "count calls for /metrics and the dashboard (off only to measure their cost)"
    )
    gossip_listen: str = _opt(
        "",
        "[host]:port for gossip (UDP) and push-pull (TCP) with other fnlb peers; cluster mode "
        f"starts when this or -join is given (then the default is :{DEFAULT_GOSSIP_PORT})",
    )
    advertise: str = _opt(
        "", "host:port other peers reach this one's gossip at (default: the gossip address)"
    )
    join: tuple[str, ...] = _list_opt(
        "peer to join, host[:port]; repeat or comma-separate; a DNS name joins every address it "
        "resolves to",
        metavar="PEER",
    )
    node_name: str = _opt("", "this peer's unique name (default: hostname:gossip-port)")
    cluster_name: str = _opt(
        "fnlb",
        "bound to every gossip packet: peers with different cluster names never merge",
        metavar="NAME",
    )
    gossip_key: str = _opt(
        "",
        "base64 AES key for gossip, the same on every peer (make one: fnlb keygen)",
        metavar="KEY",
    )
    gossip_keyring_file: str = _opt(
        "", "JSON keyring file, primary key first (fnlb keygen --output FILE)", metavar="FILE"
    )
    gossip_insecure: bool = _opt(
        False, "gossip in plaintext when no key is given (trusted networks only)"
    )
    gossip_profile: str = _opt(
        "default",
        "gossip timing: default (fast failure detection), lan or local (memberlist's)",
        metavar="PROFILE",
    )

    routing: str = _opt(
        "hotset",
        "how calls pick nodes: hotset (each function's stable node order, identical on every "
        "peer, spread over more nodes as its load grows, busy nodes avoided; docs/routing.md), "
        "rendezvous (that order alone) or classic (the original fnlb's jump hash and "
        "wait-based walk)",
        metavar="POLICY",
    )
    warm_wait: str = _opt(
        "0",
        "longest a call may wait at fnlb for one of its function's warm containers on the node "
        "to free, rather than make Fn start a container (wait for warm; Go duration such as "
        "300ms, or seconds; about a cold start's length; 0, the default: off; docs/routing.md)",
        metavar="DURATION",
    )
    data_plane: str = _opt(
        "fast",
        "what carries calls: fast (asyncio protocols and httptools, ~4x less CPU per call; "
        "docs/proxy.md) or aiohttp (aiohttp's server and client, the earlier path)",
        metavar="PLANE",
    )
    workers: int = _opt(
        0,
        "processes serving calls from the traffic port they share; 0: one per CPU fnlb may "
        "use (1 with -data-plane=aiohttp, or with -tls-cert on a port shared with the "
        "management API); 1: one process, no workers. Gossip, health checks and the "
        "management API stay in one; SIGHUP replaces the workers gracefully (docs/proxy.md)",
    )
    state_dir: str = _opt(
        "",
        "directory where a peer keeps the node list across restarts (fsync'd before a change "
        "is acknowledged); empty: memory only",
        metavar="DIR",
    )
    write_acks: int = _opt(
        1,
        "other live peers that must hold a node-list change before PUT/DELETE answers 200 "
        "(503 when fewer can; 0: do not wait)",
    )
    write_acks_degraded: bool = _opt(
        False,
        "answer 200 when fewer live peers than -write-acks can hold a change (held_by says "
        "how many did) instead of 503",
    )

    # -- the management plane's security (docs/security.md "The management API") ----------
    mgmt_tokens_file: str = _opt(
        "",
        "file of management API tokens, one 'name:token[:role]' per line (role admin, the "
        "default, or read); mode 0600; reloaded on SIGHUP. With any token, changes and key "
        "listings need 'Authorization: Bearer TOKEN'",
        metavar="FILE",
    )
    mgmt_token: str = _opt(
        "",
        "one admin token for the management API, named 'admin' in the audit log (prefer the "
        "environment variable or -mgmt-tokens-file: a flag shows in ps)",
        metavar="TOKEN",
    )
    mgmt_insecure: bool = _opt(
        False,
        "cluster mode: allow a management API without tokens on the traffic port (-listen "
        "equal to -mgmt-listen); refused otherwise",
    )
    tls_cert: str = _opt(
        "",
        "PEM certificate chain for TLS on -listen (with -tls-key); reloaded on SIGHUP",
        metavar="FILE",
    )
    tls_key: str = _opt("", "PEM private key for -tls-cert (mode 0600)", metavar="FILE")
    mgmt_tls_cert: str = _opt(
        "",
        "PEM certificate chain for TLS on -mgmt-listen (with -mgmt-tls-key; on a port shared "
        "with -listen use -tls-cert); reloaded on SIGHUP",
        metavar="FILE",
    )
    mgmt_tls_key: str = _opt("", "PEM private key for -mgmt-tls-cert (mode 0600)", metavar="FILE")
    mgmt_tls_client_ca: str = _opt(
        "",
        "PEM CA certificates: management clients must present a certificate they signed "
        "(mutual TLS; needs -mgmt-tls-cert)",
        metavar="FILE",
    )

    @property
    def warm_wait_s(self) -> float:
        """-warm-wait in seconds (0: off); `validate` has checked that it parses."""
        return duration_seconds(self.warm_wait)

    @property
    def cluster_mode(self) -> bool:
        """Gossip runs only when asked for; a lone fnlb works exactly like the original."""
        return bool(self.gossip_listen or self.join)


_CHOICES: Mapping[str, tuple[str, ...]] = {
    "log_level": ("trace", "debug", "info", "warn", "warning", "error", "fatal", "panic"),
    "log_format": ("text", "json"),
    "gossip_profile": ("default", "lan", "local"),
    "routing": ("rendezvous", "classic", "hotset"),
    "data_plane": ("fast", "aiohttp"),
}


def flag_name(field_name: str) -> str:
    """The original fnlb's spelling of a field: `hc_interval` -> `hc-interval`."""
    return field_name.replace("_", "-")


def env_name(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("env") or f"FNLB_{f.name.upper()}")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per Settings field, accepted with one dash or two, defaults shown."""
    for f in dataclasses.fields(Settings):
        name = flag_name(f.name)
        default = f.default if f.default is not dataclasses.MISSING else ()
        help_text = f"{f.metadata['help']} (default: {default!r}; env {env_name(f)})"
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": argparse.SUPPRESS,
            "help": help_text,
            "metavar": f.metadata.get("metavar") or f.name.split("_")[-1].upper(),
        }
        if f.metadata.get("list"):
            kwargs["action"] = "append"
        elif f.type in ("bool", bool):
            kwargs.update(nargs="?", const="true", metavar="BOOL")  # Go: -x, -x=true, -x=false
        parser.add_argument(f"-{name}", f"--{name}", **kwargs)


def _convert(f: dataclasses.Field[Any], raw: Any, source: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "int":
            value: Any = int(raw)
        elif kind == "float":
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
        elif kind == "bool":
            value = _parse_bool(raw)
        elif f.metadata.get("list"):
            items = [raw] if isinstance(raw, str) else list(raw)
            value = tuple(part for item in items for part in _split_list(str(item)))
        else:
            value = str(raw)
    except ValueError:
        raise ConfigError(f"{source}: {raw!r} is not a valid {kind}") from None
    choices = _CHOICES.get(f.name)
    if choices is not None:
        value = str(value).lower()
        if value not in choices:
            raise ConfigError(f"{source}: {raw!r} is not one of {', '.join(choices)}")
    return value


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


def _split_list(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def settings_from(
    parsed: Mapping[str, Any] | argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build Settings from parsed flags and the environment (flags win), then validate them."""
    values = vars(parsed) if isinstance(parsed, argparse.Namespace) else dict(parsed)
    env = os.environ if environ is None else environ
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        if f.name in values:
            kwargs[f.name] = _convert(f, values[f.name], f"-{flag_name(f.name)}")
        elif env_name(f) in env:
            kwargs[f.name] = _convert(f, env[env_name(f)], env_name(f))
    settings = Settings(**kwargs)
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    """Reject settings that cannot work, with a message naming the flag."""
    for name in ("listen", "mgmt_listen"):
        try:
            parse_listen(getattr(s, name))
        except ValueError as e:
            raise ConfigError(f"-{flag_name(name)}: {e}") from None
    for node in node_list(s.nodes):
        try:
            parse_node_address(node)
        except ValueError as e:
            raise ConfigError(f"-nodes: {e}") from None
    try:
        parse_semver(s.min_api_version)
    except ValueError as e:
        raise ConfigError(f"-min-api-version: {e}") from None
    for name in ("hc_interval", "hc_timeout"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"-{flag_name(name)}: must be greater than 0")
    for name in ("hc_unhealthy", "hc_healthy"):
        if getattr(s, name) < 1:
            raise ConfigError(f"-{flag_name(name)}: must be at least 1")
    if s.shutdown_timeout < 0:
        raise ConfigError("-shutdown-timeout: must not be negative")
    if s.write_acks < 0:
        raise ConfigError("-write-acks: must not be negative")
    if s.workers < 0:
        raise ConfigError("-workers: must not be negative (0: one per CPU)")
    if s.workers > 1 and s.data_plane != "fast":
        raise ConfigError("-workers: needs -data-plane=fast")
    if s.workers > 1 and s.tls_cert and shares_port(s):
        # A TLS session cannot be handed to the primary's API as a socket (see docs/proxy.md).
        raise ConfigError(
            "-workers with -tls-cert on a port shared with the management API (-listen equals "
            "-mgmt-listen): a worker cannot hand a TLS connection to the API; give the API its "
            "own -mgmt-listen, or -workers 1"
        )
    try:
        warm_wait = duration_seconds(s.warm_wait)
    except ValueError as e:
        raise ConfigError(f"-warm-wait: {e}") from None
    if not 0.0 <= warm_wait <= MAX_WARM_WAIT_S:
        raise ConfigError(f"-warm-wait: must be between 0 and {MAX_WARM_WAIT_S:g}s")
    if s.connect_timeout <= 0:
        raise ConfigError("-connect-timeout: must be greater than 0")
    if not 0.0 <= s.trace_sample_rate <= 1.0:
        raise ConfigError("-trace-sample-rate: must be between 0 and 1")
    if s.zipkin:
        try:
            collector_url(s.zipkin)
        except ValueError as e:
            raise ConfigError(f"-zipkin: {e}") from None
    if not s.hc_path.startswith("/"):
        raise ConfigError("-hc-path: must start with '/'")
    if not 1 <= s.target_port <= 65535:
        raise ConfigError("-target-port: must be 1-65535")
    for name in ("gossip_listen", "advertise"):
        if getattr(s, name):
            try:
                parse_listen(getattr(s, name))
            except ValueError as e:
                raise ConfigError(f"-{flag_name(name)}: {e}") from None
    for peer in s.join:
        try:
            parse_peer(peer)
        except ValueError as e:
            raise ConfigError(f"-join: {e}") from None
    if s.cluster_mode:
        from fnlb.gossip.keyring_file import keyring_from_settings

        keyring_from_settings(s.gossip_key, s.gossip_keyring_file, insecure=s.gossip_insecure)


def shares_port(s: Settings) -> bool:
    """One listener for calls and the API (port 0 asks the OS for one port per listener)."""
    return s.listen == s.mgmt_listen and parse_listen(s.listen)[1] != 0


def worker_count(s: Settings, cpus: int) -> int:
    """The processes that serve calls: -workers, or for 0 the `cpus` fnlb may use - except
    where workers cannot serve (the aiohttp plane; TLS on a port shared with the API), one.
    1 means no workers: this process serves calls itself."""
    if s.workers:
        return s.workers
    if s.data_plane != "fast" or (s.tls_cert and shares_port(s)):
        return 1
    return max(cpus, 1)


MAX_WARM_WAIT_S = 10.0
"""A hold longer than this is no cold start's length: refused as a mistake."""


def duration_seconds(text: str) -> float:
    """A duration flag in seconds: a Go duration (`300ms`, `1.5s`) or a plain number of
    seconds (`0.3`); ValueError naming what is wrong otherwise."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            return parse_go_duration_ns(text) / 1e9
        except ValueError:
            raise ValueError(
                f"{text!r} is not a duration (a Go duration such as 300ms, or seconds)"
            ) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text!r} is not a duration")
    return value


def node_list(nodes: str) -> list[str]:
    return _split_list(nodes)


def parse_semver(text: str) -> tuple[int, int, int]:
    """`0.3.579` (optionally `v`-prefixed, pre-release suffix ignored) -> (0, 3, 579)."""
    core = text.strip().lstrip("v").split("-", 1)[0].split("+", 1)[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text!r} is not a semantic version like 0.3.579")
    return int(parts[0]), int(parts[1]), int(parts[2])


def as_dict(s: Settings) -> dict[str, Any]:
    return dataclasses.asdict(s)


def settings_names() -> Sequence[str]:
    return [f.name for f in dataclasses.fields(Settings)]


def markdown_table() -> str:
    """The flags table of docs/configuration.md, generated so docs cannot drift from code."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default = f.default if f.default is not dataclasses.MISSING else ()
        help_text = str(f.metadata["help"]).replace("|", "\\|")
        rows.append(f"| `-{flag_name(f.name)}` | `{env_name(f)}` | `{default!r}` | {help_text} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
