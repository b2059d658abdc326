"""Crash detection, join propagation and gossip traffic: fnlb peers against Serf agents.

One run starts, on loopback, clusters of real processes, one after the other:
- `fnlb serve` peers (no Fn nodes) gossiping with the default profile (encrypted with a fresh
  key; `--insecure` for plaintext), polled through GET /1/lb/peers;
- Serf agents (Debian's `serf`) with -profile=lan and -profile=local, encrypted with the same
  key, polled through their RPC port (the `members` command, msgpack over TCP, which is what
  `serf members` calls; one connection per agent, so polling costs no process starts).

For each cluster and size N (default 5 and 20) and each of `--trials` trials it kills one
member (not the seed) with SIGKILL and polls every other member every `--poll` seconds
until each marks it dead ("dead" in fnlb, "failed" in Serf): the figure is the time until
the LAST member does. It then starts a replacement member and times how long its join takes
to reach every member: from the moment the newcomer itself lists the seed until every other
member lists the newcomer alive. The cluster is back at N for the next trial.

Separately it reads each fnlb peer's wire counters (GET /1/lb/gossip) over a quiet
`--traffic-window` at N = 5, 20 and 50 and prints packets and bytes per second per member.

The target (fnlb issue 3): fnlb's default profile detects a crash at every member in at most
half of Serf LAN's time at the same N. Polling adds up to one `--poll` interval to every
crash figure, for every system alike; joins are polled every `--join-poll` (0.02 s), since
they take a few tenths of a second (a round of HTTP or RPC polls itself takes a few ms per
member, so that, not the poll period, bounds the join figure's resolution).

Rerun (from the repository root; default run ~6-9 minutes on 2 cores):

    python -m bench.gossip                         # N=5,20 x 5 trials; traffic at 5, 20, 50
    python bench/gossip.py --quick                 # N=5, 1 trial, fnlb + serf lan: smoke test
    python -m bench.gossip --sizes 5 --trials 10 --systems fnlb-default,fnlb-lan,serf-lan

Every process binds 127.0.0.1 and is stopped by its PID at the end; the temporary directory
(logs) is removed unless --keep-logs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import random
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgpack

if __package__ in (None, ""):  # run as a file: make `bench` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._procs import ProcessGroup, Started, StartError, free_port, wait_http_ok

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TARGET = 0.5  # fnlb default <= TARGET x Serf LAN
DETECT_TIMEOUT = 60.0
CONVERGE_TIMEOUT = 120.0

View = dict[str, str]  # member name -> state, as one member sees it


@dataclass
class Member:
    name: str
    proc: Started
    gossip_port: int
    poll_port: int


@dataclass
class TrialResult:
    detect_s: float | None  # crash -> every other member marks it dead (None: timed out)
    join_s: float | None  # newcomer joined -> every member lists it alive


@dataclass
class ClusterResult:
    system: str
    n: int
    trials: list[TrialResult] = field(default_factory=list)


class Cluster(ABC):
    """N members of one system; start, poll, kill and replace them."""

    system = ""
    dead_states: tuple[str, ...] = ()

    def __init__(self, group: ProcessGroup, key: str) -> None:
        self.group = group
        self.key = key
        self.members: list[Member] = []
        self._count = 0

    def next_name(self) -> str:
        name = f"{self.system}-{self._count}"
        self._count += 1
        return name

    @abstractmethod
    def spawn(self, name: str, seed: Member | None) -> Member: ...

    @abstractmethod
    async def ready(self, m: Member) -> None: ...

    @abstractmethod
    async def view(self, m: Member) -> View | None: ...

    async def close(self) -> None:
        return None

    async def ready_or_respawn(self, m: Member, seed: Member | None) -> Member:
        """Wait for `m`; if a port it was given got taken meanwhile, start it again."""
        for _ in range(5):
            try:
                await self.ready(m)
                return m
            except StartError as e:
                if "in use" not in str(e):
                    raise
            m = self.spawn(m.name, seed)
        await self.ready(m)
        return m

    async def start(self, n: int) -> None:
        seed = await self.ready_or_respawn(self.spawn(self.next_name(), None), None)
        self.members.append(seed)
        rest = n - 1
        while rest > 0:  # in batches, so that 50 interpreters do not start all at once
            batch = [self.spawn(self.next_name(), seed) for _ in range(min(10, rest))]
            for m in batch:
                self.members.append(await self.ready_or_respawn(m, seed))
            rest -= len(batch)
        await self.converged()

    async def views(self, ms: Sequence[Member]) -> list[View | None]:
        return list(await asyncio.gather(*(self.view(m) for m in ms)))

    async def converged(self) -> None:
        names = {m.name for m in self.members}
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        while time.monotonic() < deadline:
            vs = await self.views(self.members)
            if all(v is not None and _alive(v) == names for v in vs):
                return
            await asyncio.sleep(0.2)
        raise StartError(f"{self.system}: {len(names)} members did not converge")


def _alive(v: View) -> set[str]:
    return {name for name, state in v.items() if state == "alive"}


class FnlbCluster(Cluster):
    dead_states = ("dead",)

    def __init__(
        self, group: ProcessGroup, key: str, profile: str, session: aiohttp.ClientSession
    ) -> None:
        super().__init__(group, key)
        self.profile = profile
        self.system = f"fnlb-{profile}"
        self.session = session

    def spawn(self, name: str, seed: Member | None) -> Member:
        gossip, mgmt = free_port(), free_port()
        cmd = [
            sys.executable, "-m", "fnlb", "serve",
            f"-listen={HOST}:{free_port()}", f"-mgmt-listen={HOST}:{mgmt}",
            f"-gossip-listen={HOST}:{gossip}", f"-node-name={name}",
            f"-gossip-profile={self.profile}", "-log-level=warning",
        ]  # fmt: skip
        cmd += [f"-gossip-key={self.key}"] if self.key else ["-gossip-insecure"]
        if seed is not None:
            cmd.append(f"-join={HOST}:{seed.gossip_port}")
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        return Member(name, self.group.start(name, cmd, cwd=REPO_ROOT, env=env), gossip, mgmt)

    async def ready(self, m: Member) -> None:
        url = f"http://{HOST}:{m.poll_port}/1/lb/peers"
        await asyncio.to_thread(wait_http_ok, m.proc, url, 60.0)

    async def view(self, m: Member) -> View | None:
        try:
            async with self.session.get(f"http://{HOST}:{m.poll_port}/1/lb/peers") as r:
                if r.status != 200:  # 503 while its gossip is still starting
                    return None
                body = await r.json()
        except (aiohttp.ClientError, OSError, ValueError):
            return None
        return {p["name"]: p["state"] for p in body["peers"]}

    async def traffic(self) -> dict[str, int]:
        """Wire counters summed over the members."""
        total: dict[str, int] = {}
        for m in self.members:
            async with self.session.get(f"http://{HOST}:{m.poll_port}/1/lb/gossip") as r:
                body = await r.json()
            for k, v in body["traffic"].items():
                total[k] = total.get(k, 0) + int(v)
        return total


class SerfRpc:
    """Serf's RPC (msgpack over TCP): handshake once, then `members` as often as needed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._seq = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._unpacker = msgpack.Unpacker(raw=False)

    async def _read(self) -> Any:
        assert self._reader is not None
        while True:
            try:
                return next(self._unpacker)
            except StopIteration:
                data = await self._reader.read(65536)
                if not data:
                    raise ConnectionResetError("serf closed the RPC connection") from None
                self._unpacker.feed(data)

    async def _call(self, command: str, body: dict[str, Any] | None, reply: bool) -> Any:
        assert self._writer is not None
        header = {"Command": command, "Seq": self._seq}
        self._seq += 1
        out = msgpack.packb(header)
        if body is not None:
            out += msgpack.packb(body)
        self._writer.write(out)
        head = await self._read()
        if head.get("Error"):
            raise RuntimeError(f"serf rpc {command}: {head['Error']}")
        return await self._read() if reply else None

    async def members(self) -> View:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(HOST, self.port)
            self._unpacker = msgpack.Unpacker(raw=False)
            await self._call("handshake", {"Version": 1}, reply=False)
        body = await self._call("members", None, reply=True)
        return {m["Name"]: m["Status"] for m in body["Members"]}

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class SerfCluster(Cluster):
    dead_states = ("failed",)

    def __init__(self, group: ProcessGroup, key: str, profile: str) -> None:
        super().__init__(group, key)
        self.profile = profile
        self.system = f"serf-{profile}"
        self.rpc: dict[str, SerfRpc] = {}

    def spawn(self, name: str, seed: Member | None) -> Member:
        bind, rpc = free_port(), free_port()
        cmd = [
            "serf", "agent", f"-node={name}", f"-bind={HOST}:{bind}",
            f"-rpc-addr={HOST}:{rpc}", f"-profile={self.profile}", "-log-level=warn",
        ]  # fmt: skip
        if self.key:
            cmd.append(f"-encrypt={self.key}")
        if seed is not None:
            cmd.append(f"-join={HOST}:{seed.gossip_port}")
        m = Member(name, self.group.start(name, cmd), bind, rpc)
        self.rpc[name] = SerfRpc(rpc)
        return m

    async def ready(self, m: Member) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if m.proc.popen.poll() is not None:
                raise StartError(f"{m.name} exited:\n{m.proc.log_tail()}")
            if await self.view(m) is not None:
                return
            await asyncio.sleep(0.1)
        raise StartError(f"{m.name}: no RPC answer:\n{m.proc.log_tail()}")

    async def view(self, m: Member) -> View | None:
        rpc = self.rpc[m.name]
        try:
            return await rpc.members()
        except (OSError, RuntimeError):
            await rpc.close()
            return None

    async def close(self) -> None:
        for rpc in self.rpc.values():
            await rpc.close()


# --- the measurements ---------------------------------------------------------------------


async def _until_all(
    cluster: Cluster, watchers: list[Member], done: Any, poll: float, give_up: float
) -> float | None:
    """Seconds until `done(view)` held for every watcher (polled), or None after `give_up`."""
    t0 = time.monotonic()
    pending = list(watchers)
    while pending:
        if time.monotonic() - t0 > give_up:
            return None
        vs = await cluster.views(pending)
        pending = [m for m, v in zip(pending, vs, strict=True) if v is None or not done(v)]
        if pending:
            await asyncio.sleep(poll)
    return time.monotonic() - t0


async def trial(cluster: Cluster, rng: random.Random, poll: float, join_poll: float) -> TrialResult:
    seed = cluster.members[0]
    victim = rng.choice(cluster.members[1:])
    others = [m for m in cluster.members if m is not victim]
    os.kill(victim.proc.popen.pid, signal.SIGKILL)
    victim.proc.popen.wait(10)
    dead = cluster.dead_states
    detect = await _until_all(
        cluster, others, lambda v: v.get(victim.name) in dead, poll, DETECT_TIMEOUT
    )
    cluster.members = others
    newcomer = await cluster.ready_or_respawn(cluster.spawn(cluster.next_name(), seed), seed)
    # The join is done when the newcomer lists the seed; from then, time the news.
    joined = await _until_all(
        cluster, [newcomer], lambda v: v.get(seed.name) == "alive", join_poll, 30.0
    )
    join = None
    if joined is not None:
        join = await _until_all(
            cluster, others, lambda v: v.get(newcomer.name) == "alive", join_poll, 30.0
        )
    cluster.members.append(newcomer)
    await cluster.converged()
    await asyncio.sleep(1.0)  # let the gossip queues drain before the next kill
    return TrialResult(detect, join)


async def measure(
    cluster: Cluster, n: int, trials: int, poll: float, join_poll: float, seed: int
) -> ClusterResult:
    result = ClusterResult(cluster.system, n)
    await cluster.start(n)
    await asyncio.sleep(2.0)  # the joins' gossip has settled
    rng = random.Random(seed)
    for i in range(trials):
        r = await trial(cluster, rng, poll, join_poll)
        result.trials.append(r)
        print(
            f"  {cluster.system} N={n} trial {i + 1}/{trials}: crash seen by all in "
            f"{_fmt(r.detect_s)} s, join reached all in {_fmt(r.join_s)} s",
            flush=True,
        )
    return result


@dataclass
class Traffic:
    n: int
    pkts_out: float
    bytes_out: float
    pkts_in: float
    bytes_in: float
    tcp_bytes: float


async def measure_traffic(cluster: FnlbCluster, n: int, window: float) -> Traffic:
    await cluster.start(n)
    await asyncio.sleep(3.0)  # past the joins' burst of gossip
    before = await cluster.traffic()
    t0 = time.monotonic()
    await asyncio.sleep(window)
    after = await cluster.traffic()
    elapsed = time.monotonic() - t0

    def rate(k: str) -> float:
        return (after.get(k, 0) - before.get(k, 0)) / elapsed / n

    tcp = rate("tcp_bytes_sent") + rate("tcp_bytes_received")
    return Traffic(
        n,
        rate("udp_packets_sent"),
        rate("udp_bytes_sent"),
        rate("udp_packets_received"),
        rate("udp_bytes_received"),
        tcp,
    )


# --- running it -----------------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    return f">{DETECT_TIMEOUT:.0f}" if x is None else f"{x:.2f}"


def _stats(xs: list[float | None]) -> tuple[str, str]:
    if not xs:
        return "-", "-"
    if any(x is None for x in xs):
        done = [x for x in xs if x is not None]
        med = statistics.median(done) if len(done) > len(xs) / 2 else None
        return _fmt(med), _fmt(None)
    vals = [x for x in xs if x is not None]
    return f"{statistics.median(vals):.2f}", f"{max(vals):.2f}"


def _stop_all(group: ProcessGroup) -> None:
    """SIGTERM every process at once (fnlb peers leave in parallel), then reap them."""
    for p in group.started:
        if p.popen.poll() is None:
            os.kill(p.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in group.started:
        while p.popen.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    group.stop_all(grace=2.0)  # SIGKILLs whatever is left


async def run_cluster(
    make: Any, n: int, trials: int, poll: float, join_poll: float, seed: int, log_dir: Path
) -> ClusterResult:
    with ProcessGroup(log_dir) as group:
        cluster: Cluster = make(group)
        try:
            return await measure(cluster, n, trials, poll, join_poll, seed)
        finally:
            await cluster.close()
            _stop_all(group)


async def run_traffic(key: str, n: int, window: float, log_dir: Path) -> Traffic:
    async with aiohttp.ClientSession() as session:
        with ProcessGroup(log_dir) as group:
            cluster = FnlbCluster(group, key, "default", session)
            try:
                return await measure_traffic(cluster, n, window)
            finally:
                _stop_all(group)


async def main_async(args: argparse.Namespace) -> int:
    key = "" if args.insecure else base64.b64encode(os.urandom(32)).decode()
    log_root = Path(tempfile.mkdtemp(prefix="fnlb-bench-gossip-"))
    results: list[ClusterResult] = []
    traffic: list[Traffic] = []
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession() as session:
            for n in args.sizes:
                for system in args.systems:
                    kind, profile = system.split("-", 1)
                    log_dir = log_root / f"{system}-{n}"
                    log_dir.mkdir()

                    def make(group: ProcessGroup, kind: str = kind, profile: str = profile) -> Any:
                        if kind == "fnlb":
                            return FnlbCluster(group, key, profile, session)
                        return SerfCluster(group, key, profile)

                    print(f"{system} N={n}: starting", flush=True)
                    results.append(
                        await run_cluster(
                            make, n, args.trials, args.poll, args.join_poll, args.seed, log_dir
                        )
                    )
        for n in args.traffic_sizes:
            log_dir = log_root / f"traffic-{n}"
            log_dir.mkdir()
            print(f"fnlb-default N={n}: traffic over {args.traffic_window:.0f} s", flush=True)
            traffic.append(await run_traffic(key, n, args.traffic_window, log_dir))
    finally:
        if args.keep_logs:
            print(f"logs kept in {log_root}")
        else:
            shutil.rmtree(log_root, ignore_errors=True)
    print_report(args, results, traffic, time.monotonic() - started)
    return 0


def print_report(
    args: argparse.Namespace,
    results: list[ClusterResult],
    traffic: list[Traffic],
    elapsed: float,
) -> None:
    print()
    print(f"# bench/gossip: {time.strftime('%Y-%m-%d %H:%M %Z')}, {platform.node()}")
    print(
        f"# {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"encryption {'off' if args.insecure else 'AES-256-GCM'}; poll every {args.poll} s "
        f"(joins: {args.join_poll} s); "
        f"{elapsed:.0f} s"
    )
    print()
    print(
        "| system | N | trials | crash -> all mark dead, median (s) | max (s) "
        "| join -> all list it, median (s) | max (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        dmed, dmax = _stats([t.detect_s for t in r.trials])
        jmed, jmax = _stats([t.join_s for t in r.trials])
        print(f"| {r.system} | {r.n} | {len(r.trials)} | {dmed} | {dmax} | {jmed} | {jmax} |")
    by = {(r.system, r.n): r for r in results}
    verdicts = []
    for n in args.sizes:
        ours, serf = by.get(("fnlb-default", n)), by.get(("serf-lan", n))
        if ours is None or serf is None:
            continue
        o = [t.detect_s for t in ours.trials]
        s = [t.detect_s for t in serf.trials]
        if any(x is None for x in o + s):
            verdicts.append(f"N={n}: a trial timed out, no verdict")
            continue
        om = statistics.median([x for x in o if x is not None])
        sm = statistics.median([x for x in s if x is not None])
        ok = om <= TARGET * sm
        verdicts.append(
            f"N={n}: fnlb-default {om:.2f} s vs serf-lan {sm:.2f} s = {om / sm:.2f}x "
            f"(target <= {TARGET}x): {'MET' if ok else 'MISSED'}"
        )
    if verdicts:
        print()
        for v in verdicts:
            print(f"- {v}")
    if traffic:
        print()
        print(
            f"fnlb-default steady-state traffic per member over {args.traffic_window:.0f} s "
            "(UDP envelopes; TCP push-pull bytes both ways):"
        )
        print()
        print("| N | UDP pkts/s out | UDP bytes/s out | UDP pkts/s in | UDP bytes/s in | TCP B/s |")
        print("|---|---|---|---|---|---|")
        for t in traffic:
            print(
                f"| {t.n} | {t.pkts_out:.1f} | {t.bytes_out:.0f} | {t.pkts_in:.1f} "
                f"| {t.bytes_in:.0f} | {t.tcp_bytes:.0f} |"
            )
    print()
    print(f"rerun: python -m bench.gossip {shlex.join(sys.argv[1:])}".rstrip())


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="N=5, 1 trial, fnlb + serf lan")
    p.add_argument("--sizes", type=_ints, default=[5, 20], help="cluster sizes (default 5,20)")
    p.add_argument("--trials", type=int, default=5, help="kills per cluster (default 5)")
    p.add_argument(
        "--systems",
        default="fnlb-default,serf-lan,serf-local",
        help="comma-separated: fnlb-default, fnlb-lan, fnlb-local, serf-lan, serf-local",
    )
    p.add_argument(
        "--traffic-sizes", type=_ints, default=[5, 20, 50], help="N for the traffic table"
    )
    p.add_argument("--traffic-window", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--poll", type=float, default=0.1, help="seconds between polls (0.1)")
    p.add_argument(
        "--join-poll",
        type=float,
        default=0.02,
        help="seconds between polls while timing a join (0.02: joins take a few tenths)",
    )
    p.add_argument("--seed", type=int, default=1, help="picks the victims")
    p.add_argument("--insecure", action="store_true", help="gossip in plaintext (both systems)")
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = p.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in args.systems:
        kind, _, profile = s.partition("-")
        if kind not in ("fnlb", "serf") or profile not in ("default", "lan", "local"):
            p.error(f"unknown system {s!r}")
        if kind == "serf" and profile == "default":
            p.error("serf has no 'default' profile: serf-lan or serf-local")
    if args.quick:
        args.sizes, args.trials, args.traffic_sizes = [5], 1, [5]
        args.traffic_window = 3.0
        args.systems = ["fnlb-default", "serf-lan"]
    if any(s.startswith("serf") for s in args.systems) and shutil.which("serf") is None:
        p.error("serf is not installed (Debian: apt-get install serf)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
