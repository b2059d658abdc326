"""Network faults as data, and the nftables rulesets and tc commands that make them real.

A fault is a small frozen dataclass naming hosts. The Network keeps the set of active faults
and, whenever it changes, renders the whole ruleset of each Host that the change touches and
loads it in one nft transaction (`render_ruleset`): no rule handles to track, no half-applied
state, and removing one fault never disturbs another. This module runs nothing, so its
output is unit-tested without root.

Every ruleset lives in one table, `inet fnlbct`, with an input and an output chain hooked at
filter priority. Loopback is always accepted first (a Host's own processes keep talking to
each other), then the deterministic drops (black holes, partitions, one-way cuts), then the
random ones (packet loss with `numgen random`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

TABLE = "fnlbct"

Proto = Literal["udp", "tcp", "all"]
Direction = Literal["in", "out", "both"]


@dataclass(frozen=True, slots=True)
class Partition:
    """No packet crosses between the hosts of `side_a` and those of `side_b`, either way."""

    side_a: frozenset[str]
    side_b: frozenset[str]

    def hosts(self) -> frozenset[str]:
        return self.side_a | self.side_b


@dataclass(frozen=True, slots=True)
class OneWay:
    """Packets from `src` to `dst` are dropped; `dst` to `src` still flows (asymmetric link)."""

    src: str
    dst: str

    def hosts(self) -> frozenset[str]:
        return frozenset((self.src, self.dst))


@dataclass(frozen=True, slots=True)
class Blackhole:
    """Every packet into or out of `host` is dropped: the host is alive but unreachable."""

    host: str

    def hosts(self) -> frozenset[str]:
        return frozenset((self.host,))


@dataclass(frozen=True, slots=True)
class Loss:
    """Each matching packet into (`in`) or out of (`out`) `host` is dropped with `pct` %.

    `proto` narrows it to UDP or TCP; `port` to packets whose source or destination port is
    that port (a packet matching both is still dropped with `pct` %, not twice). To give a
    whole cluster `pct` % loss per packet, put `direction="in"` on every host: each packet
    then meets the dice once, at its receiver.
    """

    host: str
    pct: float
    proto: Proto = "all"
    port: int | None = None
    direction: Direction = "both"

    def __post_init__(self) -> None:
        if not 0 <= self.pct <= 100:
            raise ValueError(f"loss percentage {self.pct} is not in 0..100")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not in 1..65535")

    def hosts(self) -> frozenset[str]:
        return frozenset((self.host,))


Fault = Partition | OneWay | Blackhole | Loss


def _addr_set(addresses: Iterable[str]) -> str:
    return "{ " + ", ".join(sorted(addresses)) + " }"


def _loss_rules(loss: Loss, hook: Literal["in", "out"]) -> list[str]:
    # numgen over 10000 lets a loss be given to 0.01 %.
    dice = f"numgen random mod 10000 < {round(loss.pct * 100)} drop"
    iface = 'iifname != "lo"' if hook == "in" else 'oifname != "lo"'
    if loss.proto == "all" and loss.port is None:
        return [f"{iface} {dice}"]
    l4 = "{ tcp, udp }" if loss.proto == "all" else loss.proto
    if loss.port is None:
        return [f"{iface} meta l4proto {l4} {dice}"]
    # Two rules, disjoint, so a packet to and from the port rolls the dice only once.
    return [
        f"{iface} meta l4proto {l4} th dport {loss.port} {dice}",
        f"{iface} meta l4proto {l4} th sport {loss.port} th dport != {loss.port} {dice}",
    ]


def render_ruleset(host: str, addresses: Mapping[str, str], faults: Iterable[Fault]) -> str:
    """The nft script that makes `host`'s firewall exactly `faults` (possibly none).

    `addresses` maps every host name to its IPv4 address. The script replaces the table
    atomically: it is created if absent, deleted, and, if any rule remains, created anew.
    """
    drops_in: list[str] = []
    drops_out: list[str] = []
    losses_in: list[str] = []
    losses_out: list[str] = []
    for fault in faults:
        if isinstance(fault, Blackhole):
            if fault.host == host:
                drops_in.append('iifname != "lo" drop')
                drops_out.append('oifname != "lo" drop')
        elif isinstance(fault, Partition):
            for mine, theirs in ((fault.side_a, fault.side_b), (fault.side_b, fault.side_a)):
                if host in mine and theirs - {host}:
                    peers = _addr_set(addresses[h] for h in theirs - {host})
                    drops_in.append(f"ip saddr {peers} drop")
                    drops_out.append(f"ip daddr {peers} drop")
        elif isinstance(fault, OneWay):
            if fault.src == host:
                drops_out.append(f"ip daddr {addresses[fault.dst]} drop")
            if fault.dst == host:
                drops_in.append(f"ip saddr {addresses[fault.src]} drop")
        elif isinstance(fault, Loss) and fault.host == host and fault.pct > 0:
            if fault.direction in ("in", "both"):
                losses_in += _loss_rules(fault, "in")
            if fault.direction in ("out", "both"):
                losses_out += _loss_rules(fault, "out")
    rules_in = drops_in + losses_in
    rules_out = drops_out + losses_out
    lines = [f"table inet {TABLE}", f"delete table inet {TABLE}"]
    if rules_in or rules_out:
        lines.append(f"table inet {TABLE} {{")
        for chain, hook, lo, rules in (
            ("input", "input", 'iifname "lo" accept', rules_in),
            ("output", "output", 'oifname "lo" accept', rules_out),
        ):
            lines.append(f"  chain {chain} {{")
            lines.append(f"    type filter hook {hook} priority 0; policy accept;")
            lines.append(f"    {lo}")
            lines.extend(f"    {rule}" for rule in rules)
            lines.append("  }")
        lines.append("}")
    return "\n".join(lines) + "\n"


def tbf_command(dev: str, rate_kbit: int, *, latency_ms: int = 100) -> list[str]:
    """`tc` argv that limits what leaves `dev` to `rate_kbit` kbit/s (token bucket filter).

    The bucket holds about 20 ms worth of bytes (at least a few full frames), so short
    bursts pass but a sustained stream is held to the rate; packets queued longer than
    `latency_ms` are dropped, as on a congested link.
    """
    if rate_kbit < 1:
        raise ValueError(f"rate {rate_kbit} kbit/s must be at least 1")
    burst = max(4 * 1514, rate_kbit * 1000 // 8 // 50)
    return [
        "tc",
        "qdisc",
        "replace",
        "dev",
        dev,
        "root",
        "tbf",
        "rate",
        f"{rate_kbit}kbit",
        "burst",
        str(burst),
        "latency",
        f"{latency_ms}ms",
    ]


def tbf_clear_command(dev: str) -> list[str]:
    """`tc` argv that removes a bandwidth limit from `dev` (back to the default qdisc)."""
    return ["tc", "qdisc", "del", "dev", dev, "root"]
