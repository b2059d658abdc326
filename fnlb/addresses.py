"""Addresses as fnlb's flags and API take them: `[host]:port`, Fn nodes, peers to join, the
`-zipkin` collector URL.

Pure parsing, shared by the settings (fnlb.config), the gossip runtime and the API, so none
of them imports another for it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import urlsplit

DEFAULT_GOSSIP_PORT: Final = 8946
_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def parse_listen(addr: str) -> tuple[str, int]:
    """`[host]:port` -> (host, port); an empty host means every interface, as in Go."""
    host, sep, port_text = addr.rpartition(":")
    if not sep:
        raise ValueError(f"{addr!r} is not [host]:port")
    host = host.strip("[]")
    port = _parse_port(port_text, addr, allow_zero=True)
    if host and not _valid_host(host):
        raise ValueError(f"{addr!r}: {host!r} is not a valid hostname or IP address")
    return host, port


def parse_node_address(addr: str) -> tuple[str, int]:
    """Validate an Fn node address `host:port` (IPv6 as `[::1]:8080`); return (host, port)."""
    if not isinstance(addr, str) or not addr:
        raise ValueError("node address is empty")
    if len(addr) > 261:
        raise ValueError(f"node address {addr[:40]!r}... is too long")
    if "://" in addr:
        raise ValueError(f"node {addr!r}: give host:port without a scheme (http://...)")
    host, sep, port_text = addr.rpartition(":")
    if not sep or not host:
        raise ValueError(f"node {addr!r} is not host:port")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"node {addr!r}: unbalanced brackets")
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"node {addr!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"node {addr!r}: write IPv6 addresses as [addr]:port")
    elif not _valid_host(host):
        raise ValueError(f"node {addr!r}: {host!r} is not a valid hostname or IP address")
    return host, _parse_port(port_text, addr, allow_zero=False)


def parse_peer(addr: str) -> tuple[str, int]:
    """A peer to join: `host[:port]` or `[v6][:port]`; the port defaults to the gossip port."""
    text = addr.strip()
    if (text.startswith("[") and text.endswith("]")) or text.count(":") == 0:
        text = f"{text}:{DEFAULT_GOSSIP_PORT}"
    host, port = parse_node_address(text)
    return host, port


def _parse_port(text: str, addr: str, *, allow_zero: bool) -> int:
    if not text.isdigit() or len(text) > 5:
        raise ValueError(f"{addr!r}: port {text!r} is not a number 1-65535")
    port = int(text)
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ValueError(f"{addr!r}: port {port} is not in 1-65535")
    return port


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    if len(host) > 253 or host.replace(".", "").isdigit():
        return False
    labels = host.rstrip(".").split(".")
    return all(_HOSTNAME_LABEL.match(label) for label in labels)


def collector_url(url: str) -> tuple[str, int]:
    """(URL to post to, Zipkin API version 1 or 2); ValueError for a URL that cannot work."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL like http://zipkin:9411/api/v2/spans")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number 1-65535") from None
    path = parts.path.rstrip("/")
    if not path:
        return parts._replace(path="/api/v2/spans").geturl(), 2
    return parts.geturl(), 1 if path.endswith("/api/v1/spans") else 2
