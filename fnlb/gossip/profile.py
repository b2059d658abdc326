"""Gossip timings and sizes: one frozen dataclass, three named profiles.

Every timing of the SWIM member and every size limit of its packets comes from a
`GossipProfile`. The profiles are named constructors, not scattered constants:

- `GossipProfile.lan()`: memberlist's DefaultLANConfig numbers (what Serf `-profile=lan` runs),
  the baseline we compare against.
- `GossipProfile.local()`: memberlist's DefaultLocalConfig numbers (one host / loopback).
- `GossipProfile.fnlb_default()`: OUR default, tuned in the simulator (`fnlb.gossip.sim`,
  `bench/gossip_sim.py`) to mark a crashed peer dead at every member in about half of Serf's
  LAN time while surviving 10 % packet loss and a two-second event-loop stall without a false
  failure. docs/gossip.md has the measured figures.

Crash-detection time is roughly: wait for the first probe of the dead member (under one
`probe_interval` for N >= 5), plus one scaled `probe_interval` of failed direct + indirect
probes, plus the suspicion timeout (`suspicion_mult * max(1, log10 N) * probe_interval` once
enough members confirm), plus a few gossip rounds to spread "dead".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fnlb.errors import ConfigError

#: Largest UDP payload a member builds (before any encryption overhead the runtime adds).
DEFAULT_PACKET_BUDGET = 1400
#: Largest per-member metadata, in bytes (memberlist's MetaMaxSize).
META_MAX = 512


@dataclass(frozen=True, slots=True)
class GossipProfile:
    """Timings (seconds) and sizes (bytes) of the SWIM + Lifeguard member.

    Each field: unit, default (memberlist LAN's where one exists), and what it trades.
    """

    probe_interval: float = 1.0
    """Seconds between failure-detection probes of one peer. Lower detects crashes sooner at
    the cost of more packets (2 per probe per member per interval). Default 1.0."""

    probe_timeout: float = 0.5
    """Seconds to wait for a direct ack before asking `indirect_checks` peers (and the stream
    fallback) to probe for us. Must exceed the network's round trip at its 99th percentile;
    lower shortens detection but yields more indirect probes. Default 0.5."""

    indirect_checks: int = 3
    """Peers asked to ping-req a target that missed its direct ack. More survives more packet
    loss (each path is an independent chance) at the cost of 4 packets per helper. Default 3."""

    suspicion_mult: int = 4
    """Suspicion timeout multiplier: the minimum timeout is
    suspicion_mult * max(1, log10 N) * probe_interval. Higher gives a suspected (possibly only
    slow) member longer to refute, and delays crash detection by as much. Default 4."""

    suspicion_max_timeout_mult: int = 6
    """Lifeguard: a suspicion with no independent confirmation waits this many times the
    minimum; each confirmation shrinks it towards the minimum. Higher makes lone (possibly
    wrong) suspicions harmless for longer. Default 6."""

    gossip_interval: float = 0.2
    """Seconds between gossip rounds (queued broadcasts to `gossip_nodes` random peers; a
    round with nothing queued sends nothing). Lower spreads news faster for more packets.
    Default 0.2."""

    gossip_nodes: int = 3
    """Peers each gossip round sends to (the fan-out). Default 3."""

    retransmit_mult: int = 4
    """Each broadcast is sent retransmit_mult * ceil(log10(N + 1)) times before it is dropped.
    Higher makes delivery under loss likelier at the cost of bandwidth. Default 4."""

    push_pull_interval: float = 30.0
    """Seconds between full-state exchanges (anti-entropy, over a stream) with one random
    peer; scaled up for N > 32 as memberlist does. Lower heals missed updates sooner at the
    cost of O(N) bytes per exchange. 0 disables. Default 30."""

    gossip_to_the_dead_time: float = 30.0
    """Seconds after a member is marked dead during which gossip still picks it, so that a
    wrongly killed member hears of its death and refutes. Default 30."""

    awareness_max_multiplier: int = 8
    """Lifeguard local health: the probe interval of a member that misses acks/nacks or has
    to refute suspicions is stretched up to this factor. Default 8."""

    reconnect_interval: float = 30.0
    """Seconds between attempts to push-pull with one random recently dead (not left) member,
    so that a healed partition merges on its own. 0 disables. Default 30."""

    dead_retention: float = 3600.0
    """Seconds a dead or left member stays in the table (and is a reconnect candidate) before
    it is forgotten. Longer heals longer partitions; costs one entry per departed member in
    every push-pull. Default 3600."""

    join_retry_interval: float = 2.0
    """Seconds between join attempts while no seed has answered. Default 2."""

    stream_timeout: float = 10.0
    """Seconds a stream exchange (push-pull, join) may take before it counts as failed.
    Default 10."""

    stream_probe: bool = True
    """Also ping a target over a stream (TCP in the runtime) when its direct ack is late, as
    memberlist's TCP fallback: a network that drops datagrams but not streams then causes no
    suspicion. Default True."""

    packet_budget: int = DEFAULT_PACKET_BUDGET
    """Largest datagram the member builds, in bytes; broadcasts are piggybacked up to it.
    Keep under the path MTU minus IP/UDP and encryption overhead. Default 1400."""

    def __post_init__(self) -> None:
        positive = ("probe_interval", "probe_timeout", "gossip_interval", "stream_timeout")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"gossip {name} must be > 0")
        if self.probe_timeout >= self.probe_interval:
            raise ConfigError("gossip probe_timeout must be shorter than probe_interval")
        if self.suspicion_mult < 1 or self.suspicion_max_timeout_mult < 1:
            raise ConfigError("gossip suspicion multipliers must be >= 1")
        if self.indirect_checks < 0 or self.gossip_nodes < 1 or self.retransmit_mult < 1:
            raise ConfigError("gossip fan-outs must be positive")
        if self.awareness_max_multiplier < 1:
            raise ConfigError("gossip awareness_max_multiplier must be >= 1")
        if not 576 <= self.packet_budget <= 65_000:
            raise ConfigError("gossip packet_budget must be within 576..65000 bytes")
        nonneg = (
            "push_pull_interval",
            "gossip_to_the_dead_time",
            "reconnect_interval",
            "dead_retention",
            "join_retry_interval",
        )
        for name in nonneg:
            if getattr(self, name) < 0:
                raise ConfigError(f"gossip {name} must be >= 0")

    @classmethod
    def lan(cls) -> GossipProfile:
        """memberlist's DefaultLANConfig (Serf `-profile=lan`): the baseline to beat."""
        return cls()

    @classmethod
    def local(cls) -> GossipProfile:
        """memberlist's DefaultLocalConfig (Serf `-profile=local`): loopback, one host."""
        return cls(
            probe_timeout=0.2,
            suspicion_mult=3,
            gossip_interval=0.1,
            retransmit_mult=2,
            push_pull_interval=15.0,
            indirect_checks=1,
            gossip_to_the_dead_time=15.0,
            reconnect_interval=15.0,
        )

    @classmethod
    def fnlb_default(cls) -> GossipProfile:
        """fnlb's default: crash detected everywhere in well under half of Serf LAN's time.

        Measured in the simulator (docs/gossip.md, bench/gossip_sim.py): median time until
        every member marks a crashed one dead 2.2 s at N=5 and 3.1 s at N=20 (Serf LAN on
        loopback: ~6 s and ~7 s); no false death at 10 % loss (N=50, 30 min) nor for a 2 s
        stall (N=5) or 2.33 s (N=20). Why each number:
        - probe_interval 0.4 s, probe_timeout 0.15 s: a LAN round trip is well under a
          millisecond, so 150 ms still leaves room for a busy event loop; probing 2.5 times a
          second costs ~5 small datagrams/s per member regardless of N.
        - suspicion_mult 4 (K = 2 independent confirmations to reach the minimum): minimum
          suspicion 1.6 s at N <= 10, 2.1 s at N = 20, 2.7 s at N = 50; an unconfirmed
          suspicion waits 6x that, so a lone wrong suspicion under loss is refuted first.
        - gossip_interval 0.1 s with retransmit_mult 4: news (suspect, refutation, dead)
          reaches everyone in a few hundred ms; a round sends nothing when nothing is queued.
        - push_pull_interval 15 s and reconnect_interval 10 s: with N members some member
          tries a dead one every 10/N s, so a healed partition merges within about a second.
        """
        return cls(
            probe_interval=0.4,
            probe_timeout=0.15,
            indirect_checks=3,
            suspicion_mult=4,
            suspicion_max_timeout_mult=6,
            gossip_interval=0.1,
            gossip_nodes=3,
            retransmit_mult=4,
            push_pull_interval=15.0,
            gossip_to_the_dead_time=15.0,
            reconnect_interval=10.0,
        )

    def replace(self, **changes: object) -> GossipProfile:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
