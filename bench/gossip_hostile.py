"""Hostile gossip traffic at one peer of 3 real `fnlb serve` processes, and a join meanwhile.

Issue #12's figures: `--datagrams` hostile UDP datagrams and `--streams` hostile TCP streams
(random, truncated, oversized, nested, replayed from another peer, sealed with a wrong key,
and for streams also huge declared lengths, another cluster's header and silence) at the
gossip port of peer p0 of a 3-peer encrypted cluster, all on loopback. It reports:

- crashes (every peer must still run), and whether any peer ever listed another as anything
  but alive while the attack ran (polled every 0.5 s);
- every drop by reason, from p0's `GET /1/lb/gossip` counters (before/after), against what
  was sent; datagrams the kernel dropped before fnlb read them (socket buffer full) are the
  difference between sent and `udp_packets_received`;
- p0's RSS before and after, and its peak (VmHWM);
- the time a 4th peer takes to join (listed alive by p0, and listing all 4 itself) with no
  attack, and again while the attack runs;
- in-process: decode time and tracemalloc peak of the largest hostile inputs (one message
  must block the loop at most 50 ms and cost at most 2 x its size + slack).

"Nested" and "replayed" inputs are sealed with the cluster's key (the bench is a key holder,
as a compromised or buggy peer would be): they reach the codec and its bounds. Stream
sources are spread over 127.0.0.2-127.0.0.201 so the per-source cap is not what stops them.

Rerun (from the repository root; the full count takes a few minutes on an idle machine):

    python bench/gossip_hostile.py                                  # 1,000,000 and 10,000
    python bench/gossip_hostile.py --datagrams 200000 --streams 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import struct
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `fnlb` and `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench._cluster_procs import HOST, REPO_ROOT, Peer, alive_peers, memory_mb, repo_env
from bench._procs import ProcessGroup, free_port, wait_http_ok
from fnlb.errors import RemoteProtocolError
from fnlb.gossip import codec
from fnlb.gossip.crypto import GossipCipher, Keyring
from fnlb.gossip.keyring_file import save_keyring_file
from fnlb.gossip.messages import Ping
from fnlb.gossip.transport import PIECE, frame, message_frames
from fnlb.payloads import envelope

KEY = bytes(range(7, 39))
WRONG_KEY = bytes(range(50, 82))
DATAGRAM_KINDS = ("random", "truncated", "oversized", "nested", "replayed", "wrong_key")
STREAM_KINDS = (
    "random",
    "huge_length",
    "other_cluster",
    "truncated",
    "nested",
    "replayed",
    "wrong_key",
    "silent",
)


# --- the hostile inputs -----------------------------------------------------------------------


def empty_arrays(size: int) -> bytes:
    """The issue's attack: a stream message of arrays of 1,000 empty arrays, ~`size` bytes."""
    row = b"\xdc" + (1000).to_bytes(2, "big") + b"\x90" * 1000
    rows = max(1, size // len(row))
    return b"\x01\xdd" + rows.to_bytes(4, "big") + row * rows


def nested_payload(rng: random.Random, size: int) -> bytes:
    """A gossip payload of nested empty arrays (version byte first), about `size` bytes."""
    inner = b"\xdc" + (255).to_bytes(2, "big") + b"\x90" * 255
    count = max(1, size // len(inner))
    if size > 100_000:
        return empty_arrays(size)
    shape = rng.randrange(3)
    if shape == 0:
        return b"\x01\xdc" + min(count, 255).to_bytes(2, "big") + inner * min(count, 255)
    if shape == 1:
        return b"\x01" + b"\x91" * min(size, 2000) + b"\x90"
    return b"\x01\xdd" + count.to_bytes(4, "big") + b"\x90" * count


class Datagrams:
    """Hostile datagrams for `target` (p0), made by a key holder and strangers."""

    def __init__(self, rng: random.Random, target: str, other: str) -> None:
        self.rng = rng
        self.target = target
        self.other = other
        self.keyed = GossipCipher(Keyring([KEY]), "fnlb", name="bench")
        self.wrong = GossipCipher(Keyring([WRONG_KEY]), "fnlb")
        self.seq = 0
        self.replay_pool = [self._ping(other) for _ in range(64)]

    def _ping(self, to: str) -> bytes:
        self.seq += 1
        data = codec.encode_packet([codec.encode_message(Ping(self.seq, to))])
        return self.keyed.seal(data, time.time(), to=to)

    def make(self, kind: str) -> bytes:
        rng = self.rng
        if kind == "random":
            return rng.randbytes(rng.randrange(1, 1400))
        if kind == "truncated":
            sealed = self._ping(self.target)
            return sealed[: rng.randrange(1, len(sealed))]
        if kind == "oversized":
            return b"\x03" + self.keyed.seal(b"", time.time())[1:18] + rng.randbytes(60_000)
        if kind == "nested":
            return self.keyed.seal(nested_payload(rng, 1300), time.time(), to=self.target)
        if kind == "replayed":  # sealed for p1, sent to p0
            return self.replay_pool[rng.randrange(len(self.replay_pool))]
        return self.wrong.seal(rng.randbytes(200), time.time(), to=self.target)


def send_datagrams(port: int, count: int, rate: float, seed: int) -> tuple[Counter[str], float]:
    """Send `count` hostile datagrams at p0, paced at `rate` a second; sent by kind, seconds."""
    gen = Datagrams(random.Random(seed), "p0", "p1")
    sent: Counter[str] = Counter()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.2", 0))
    start = time.monotonic()
    batch = 500
    try:
        for i in range(count):
            kind = DATAGRAM_KINDS[i % len(DATAGRAM_KINDS)]
            try:
                sock.sendto(gen.make(kind), (HOST, port))
                sent[kind] += 1
            except OSError:
                sent["send_error"] += 1
            if i % batch == batch - 1:
                ahead = (i + 1) / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        sock.close()
    return sent, time.monotonic() - start


async def hostile_stream(port: int, kind: str, source: str, rng: random.Random) -> None:
    """One hostile connection at p0 of `kind`; waits for p0 to close it (at most 15 s)."""
    keyed = GossipCipher(Keyring([KEY]), "fnlb", name="bench")
    now = time.time()
    if kind == "random":
        data = rng.randbytes(rng.randrange(1, 4096))
    elif kind == "huge_length":
        data = struct.pack(">I", 20 << 20) + rng.randbytes(1000)
    elif kind == "other_cluster":
        env = GossipCipher(Keyring([KEY]), "another").seal(bytes(PIECE), now, to="p0")
        data = frame(env)[:200]
    elif kind == "truncated":
        pieces, _ = message_frames(keyed, rng.randbytes(3 * PIECE), now, to="p0")
        whole = b"".join(pieces)
        data = whole[: rng.randrange(1, len(whole))]
    elif kind == "nested":  # one in ten at the 3.8 MB, the rest 64 KB
        size = 3_800_000 if rng.randrange(10) == 0 else 64 * 1024
        pieces, _ = message_frames(keyed, nested_payload(rng, size), now, to="p0")
        data = b"".join(pieces)
    elif kind == "replayed":
        pieces, _ = message_frames(keyed, rng.randbytes(5000), now, to="p1")
        data = b"".join(pieces)
    elif kind == "wrong_key":
        wrong = GossipCipher(Keyring([WRONG_KEY]), "fnlb")
        pieces, _ = message_frames(wrong, rng.randbytes(5000), now, to="p0")
        data = b"".join(pieces)
    else:  # silent
        data = b""
    try:
        async with asyncio.timeout(15):
            reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source, 0))
            try:
                if data:
                    writer.write(data)
                    await writer.drain()
                await reader.read()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        pass


async def keyless_big_frames(port: int, connections: int, size: int) -> int:
    """The issue's reproduction: `connections` keyless streams each writing a `size`-byte
    frame (a valid-looking header, then zeros) at once; how many p0 cut off before the end."""
    header = b"\x03" + GossipCipher(Keyring([WRONG_KEY]), "fnlb").seal(b"", time.time())[1:18]
    cut = 0

    async def one(i: int) -> None:
        nonlocal cut
        try:
            async with asyncio.timeout(60):
                _, writer = await asyncio.open_connection(
                    HOST, port, local_addr=(f"127.0.1.{1 + i}", 0)
                )
                try:
                    writer.write(struct.pack(">I", size) + header)
                    chunk = bytes(1 << 20)
                    for _ in range(size // len(chunk)):
                        writer.write(chunk)
                        await writer.drain()
                except OSError:
                    cut += 1
                finally:
                    writer.close()
        except (OSError, TimeoutError):
            cut += 1

    await asyncio.gather(*(one(i) for i in range(connections)))
    return cut


async def send_streams(port: int, count: int, concurrency: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    sent: Counter[str] = Counter()
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            kind = STREAM_KINDS[i % len(STREAM_KINDS)]
            await hostile_stream(port, kind, f"127.0.0.{2 + i % 200}", rng)
            sent[kind] += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    return sent


# --- the cluster ------------------------------------------------------------------------------


def spawn(group: ProcessGroup, name: str, keyring: Path, join: int | None) -> Peer:
    listen, mgmt, gossip = free_port(), free_port(), free_port()
    cmd = [
        sys.executable, "-m", "fnlb", "serve",
        f"-listen={HOST}:{listen}", f"-mgmt-listen={HOST}:{mgmt}",
        f"-gossip-listen={HOST}:{gossip}", f"-node-name={name}",
        f"-gossip-keyring-file={keyring}", "-log-level=warning",
    ]  # fmt: skip
    if join is not None:
        cmd.append(f"-join={HOST}:{join}")
    return Peer(name, group.start(name, cmd, cwd=REPO_ROOT, env=repo_env()), listen, mgmt, gossip)


async def gossip_stats(session: aiohttp.ClientSession, peer: Peer) -> dict[str, Any]:
    async with session.get(f"{peer.mgmt_url}/1/lb/gossip") as r:
        body: dict[str, Any] = await r.json()
        return body


async def timed_join(
    group: ProcessGroup, session: aiohttp.ClientSession, name: str, keyring: Path, seed: Peer
) -> tuple[float, Peer]:
    """Start peer `name` joining `seed`: seconds until both list each other alive."""
    start = time.monotonic()
    peer = spawn(group, name, keyring, seed.gossip)
    await asyncio.to_thread(wait_http_ok, peer.proc, f"{peer.mgmt_url}/1/lb/peers", 60)
    while time.monotonic() - start < 120:
        if name in await alive_peers(session, seed) and seed.name in await alive_peers(
            session, peer
        ):
            return time.monotonic() - start, peer
        await asyncio.sleep(0.05)
    return float("inf"), peer


async def watch_views(
    session: aiohttp.ClientSession, peers: list[Peer], stop: asyncio.Event
) -> Counter[str]:
    """Every 0.5 s until `stop`: count any peer listing another as not alive."""
    seen: Counter[str] = Counter()
    while not stop.is_set():
        for p in peers:
            try:
                async with session.get(f"{p.mgmt_url}/1/lb/peers") as r:
                    body = await r.json()
            except (aiohttp.ClientError, OSError, ValueError):
                seen["unreachable"] += 1
                continue
            for q in body["peers"]:
                if q["name"] in {x.name for x in peers} and q["state"] != "alive":
                    seen[f"{p.name} saw {q['name']} {q['state']}"] += 1
        await asyncio.sleep(0.5)
    return seen


# --- decode bounds, in process ----------------------------------------------------------------


def decode_figures() -> list[tuple[str, int, float, int, str]]:
    """(input, bytes, ms, peak bytes, outcome) for the largest hostile and honest inputs."""
    rows = [
        [f"peer-{i}.example:7946", f"10.0.{i // 256 % 256}.{i % 256}", 7946, i, 0, b"m" * 8]
        for i in range(codec.MAX_ENTRIES)
    ]
    import msgpack  # the bench only

    honest = b"\x01" + msgpack.packb([9, False, rows, bytes(1000)], use_bin_type=True)
    cases: list[tuple[str, bytes, Callable[[bytes], object]]] = [
        ("stream: 3.8 MB of nested empty arrays", empty_arrays(3_800_000), codec.decode_stream),
        ("stream: 50 deep", b"\x01" + b"\x91" * 49 + b"\x90", codec.decode_stream),
        ("stream: 2,000 deep", b"\x01" + b"\x91" * 1999 + b"\x90", codec.decode_stream),
        (
            "stream: 16 MB, 4,000 arrays of 4,096 empty arrays",
            b"\x01\xdd"
            + (4000).to_bytes(4, "big")
            + (b"\xdd" + (4096).to_bytes(4, "big") + b"\x90" * 4096) * 4000,
            codec.decode_stream,
        ),
        (
            "datagram: 64 KB nested",
            b"\x01\xdc\x00\xff" + (b"\xdc\x00\xff" + b"\x90" * 255) * 250,
            codec.decode_compound,
        ),
        (f"stream: honest push-pull, {codec.MAX_ENTRIES} members", honest, codec.decode_stream),
    ]
    cases.append(
        (
            "cluster state: 8 MB of nested empty arrays",
            empty_arrays(8 << 20)[1:],  # no gossip version byte: the delegate's own bytes
            envelope.unpack,  # how every broadcast and full state is read
        )
    )
    out = []
    for name, data, decode in cases:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            try:
                decode(data)
                outcome = "decoded"
            except RemoteProtocolError as e:
                outcome = e.reason
            best = min(best, time.perf_counter() - t0)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        with contextlib.suppress(RemoteProtocolError):
            decode(data)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        out.append((name, len(data), best * 1000, peak, outcome))
    return out


# --- the run ----------------------------------------------------------------------------------


def kernel_udp_drops(port: int) -> int:
    """Datagrams the kernel dropped for the UDP socket bound to `port` (its receive buffer
    was full): /proc/net/udp's last column. They never reached fnlb, so it cannot count them."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            total += int(fields[-1])
    return total


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v != before.get(k, 0)}


async def run(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, ProcessGroup(Path(tmp)) as group:
        keyring = Path(tmp) / "keyring.json"
        save_keyring_file(keyring, [KEY])
        async with aiohttp.ClientSession() as session:
            p0 = spawn(group, "p0", keyring, None)
            await asyncio.to_thread(wait_http_ok, p0.proc, f"{p0.mgmt_url}/1/lb/peers", 60)
            others = [spawn(group, f"p{i}", keyring, p0.gossip) for i in (1, 2)]
            peers = [p0, *others]
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                views = [await alive_peers(session, p) for p in peers]
                if all(v == {"p0", "p1", "p2"} for v in views):
                    break
                await asyncio.sleep(0.2)
            idle_join, j1 = await timed_join(group, session, "j1", keyring, p0)
            os.kill(j1.pid, 15)  # leaves gracefully; not part of the attack's cluster
            j1.proc.popen.wait(10)
            await asyncio.sleep(2)
            rss_start, _ = memory_mb(p0.pid)
            big_cut = await keyless_big_frames(p0.gossip, 16, 20 << 20)
            await asyncio.sleep(1)
            rss_big, rss_big_peak = memory_mb(p0.pid)
            before = await gossip_stats(session, p0)
            rss_before, _ = memory_mb(p0.pid)
            kernel_before = kernel_udp_drops(p0.gossip)
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch_views(session, peers, stop))
            t0 = time.monotonic()
            dgram_task = asyncio.create_task(
                asyncio.to_thread(send_datagrams, p0.gossip, args.datagrams, args.rate, args.seed)
            )
            stream_task = asyncio.create_task(
                send_streams(p0.gossip, args.streams, args.concurrency, args.seed)
            )
            await asyncio.sleep(3)
            attack_join, j2 = await timed_join(group, session, "j2", keyring, p0)
            dgram_sent, dgram_seconds = await dgram_task
            stream_sent = await stream_task
            attack_seconds = time.monotonic() - t0
            await asyncio.sleep(3)  # let the last datagrams and streams be counted
            stop.set()
            not_alive = await watcher
            after = await gossip_stats(session, p0)
            rss_after, rss_peak = memory_mb(p0.pid)
            kernel_dropped = kernel_udp_drops(p0.gossip) - kernel_before
            crashed = [p.name for p in [*peers, j2] if p.proc.popen.poll() is not None]
            received = after["traffic"].get("udp_packets_received", 0) - before["traffic"].get(
                "udp_packets_received", 0
            )
            report = {
                "keyless_20mib_frames": {
                    "connections": 16,
                    "cut_off_by_p0": big_cut,
                    "rss_mb_before": round(rss_start, 1),
                    "rss_mb_after": round(rss_big, 1),
                    "rss_mb_peak": round(rss_big_peak, 1),
                },
                "datagrams_sent": dict(dgram_sent),
                "datagram_seconds": round(dgram_seconds, 1),
                "datagram_rate": round(sum(dgram_sent.values()) / dgram_seconds),
                "datagrams_received_by_p0": received,
                "datagrams_dropped_by_kernel": kernel_dropped,
                "streams_sent": dict(stream_sent),
                "streams_served_by_p0": after["traffic"].get("tcp_streams_served", 0)
                - before["traffic"].get("tcp_streams_served", 0),
                "attack_seconds": round(attack_seconds, 1),
                "drops_on_p0": delta(after["drops"], before["drops"]),
                "crashed": crashed,
                "not_alive_seen": dict(not_alive),
                "rss_mb_before": round(rss_before, 1),
                "rss_mb_after": round(rss_after, 1),
                "rss_mb_peak": round(rss_peak, 1),
                "join_seconds_idle": round(idle_join, 2),
                "join_seconds_under_attack": round(attack_join, 2),
            }
    report["decode"] = [
        {"input": n, "bytes": b, "ms": round(ms, 1), "peak_x_input": round(p / b, 2), "outcome": o}
        for n, b, ms, p, o in decode_figures()
    ]
    print(json.dumps(report, indent=2))
    print_table(report)
    ok = not report["crashed"] and not report["not_alive_seen"]
    return 0 if ok else 1


def print_table(r: dict[str, Any]) -> None:
    """The figures docs/benchmarks.md shows, as a markdown table."""
    big = r["keyless_20mib_frames"]
    rows = [
        ("16 keyless 20 MiB frames: cut off / RSS before, after (MB)",
         f"{big['cut_off_by_p0']} / {big['rss_mb_before']}, {big['rss_mb_after']}"),
        ("datagrams sent / read by p0 / dropped by the kernel",
         f"{sum(r['datagrams_sent'].values())} / {r['datagrams_received_by_p0']} / "
         f"{r['datagrams_dropped_by_kernel']} ({r['datagram_rate']} a second sent)"),
        ("streams sent / served by p0",
         f"{sum(r['streams_sent'].values())} / {r['streams_served_by_p0']}"),
        ("crashes", str(len(r["crashed"]))),
        ("peers seen not alive", str(sum(r["not_alive_seen"].values()))),
        ("p0 RSS before / after / peak (MB)",
         f"{r['rss_mb_before']} / {r['rss_mb_after']} / {r['rss_mb_peak']}"),
        ("join idle / under attack (s)",
         f"{r['join_seconds_idle']} / {r['join_seconds_under_attack']}"),
        ("drops counted on p0", str(sum(r["drops_on_p0"].values()))),
    ]  # fmt: skip
    print("\n| figure | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print("\n| input | bytes | ms | peak / input | outcome |\n|---|---|---|---|---|")
    for d in r["decode"]:
        print(f"| {d['input']} | {d['bytes']} | {d['ms']} | {d['peak_x_input']} | {d['outcome']} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datagrams", type=int, default=1_000_000)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=2_000.0, help="datagrams a second")
    parser.add_argument("--concurrency", type=int, default=120, help="streams open at once")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
