"""Network faults as data, and the nftables rulesets and tc commands that make them real.

A fault is a small frozen dataclass naming hosts. The Network keeps the set of active faults
and, whenever it changes, renders the whole ruleset of each Host that the change touches and
loads it in one nft transaction (`render_ruleset`): no rule handles to track, no half-applied
state, and removing one fault never disturbs another. This module runs nothing, so its
output is unit-tested without root.

Every rule drops at the *receiving* Host's input hook, never at a sender's output: a packet
dropped on output makes the sender's sendto()/connect() fail at once with EPERM, which no
real network does; dropped on input it is silently lost, as on a cut cable. So a partition
is each side ignoring the other, a one-way cut is the destination ignoring the source, a
black hole is the host ignoring everyone and everyone ignoring it, and loss "out of" a host
is rolled at each other host. The rules live in one table, `inet fnlbct`, with one input
chain: loopback accepted first (a Host's own processes keep talking to each other), then the
deterministic drops, then the random ones (`numgen random`).
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
        return frozenset((self.host,))  # and every other host, which ignores it


@dataclass(frozen=True, slots=True)
class Loss:
    """Each matching packet into (`in`) or out of (`out`) `host` is lost with `pct` %.

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


def _loss_rule(loss: Loss, source: str | None) -> list[str]:
    """Input rules for `loss`; `source` narrows them to packets from that address."""
    # numgen over 10000 lets a loss be given to 0.01 %.
    dice = "drop" if loss.pct >= 100 else f"numgen random mod 10000 < {round(loss.pct * 100)} drop"
    head = f"ip saddr {source}" if source else 'iifname != "lo"'
    if loss.proto == "all" and loss.port is None:
        return [f"{head} {dice}"]
    l4 = "{ tcp, udp }" if loss.proto == "all" else loss.proto
    if loss.port is None:
        return [f"{head} meta l4proto {l4} {dice}"]
    # Two rules, disjoint, so a packet to and from the port rolls the dice only once.
    return [
        f"{head} meta l4proto {l4} th dport {loss.port} {dice}",
        f"{head} meta l4proto {l4} th sport {loss.port} th dport != {loss.port} {dice}",
    ]


def render_ruleset(host: str, addresses: Mapping[str, str], faults: Iterable[Fault]) -> str:
    """The nft script that makes `host`'s share of `faults` its whole firewall.

    `addresses` maps every host name to its IPv4 address. The script replaces the table
    atomically: it is created if absent, deleted, and, if any rule remains, created anew.
    """
    drops: list[str] = []
    losses: list[str] = []
    for fault in faults:
        if isinstance(fault, Blackhole):
            if fault.host == host:
                drops.append('iifname != "lo" drop')
            else:
                drops.append(f"ip saddr {addresses[fault.host]} drop")
        elif isinstance(fault, Partition):
            for mine, theirs in ((fault.side_a, fault.side_b), (fault.side_b, fault.side_a)):
                if host in mine and theirs - {host}:
                    drops.append(f"ip saddr {_addr_set(addresses[h] for h in theirs)} drop")
        elif isinstance(fault, OneWay):
            if fault.dst == host:
                drops.append(f"ip saddr {addresses[fault.src]} drop")
        elif isinstance(fault, Loss) and fault.pct > 0:
            if fault.host == host and fault.direction in ("in", "both"):
                losses += _loss_rule(fault, None)
            if fault.host != host and fault.direction in ("out", "both"):
                losses += _loss_rule(fault, addresses[fault.host])
    lines = [f"table inet {TABLE}", f"delete table inet {TABLE}"]
    if drops or losses:
        lines += [
            f"table inet {TABLE} {{",
            "  chain input {",
            "    type filter hook input priority 0; policy accept;",
            '    iifname "lo" accept',
            *(f"    {rule}" for rule in drops + losses),
            "  }",
            "}",
        ]
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
