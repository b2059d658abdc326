"""Start a cluster of `fnlb serve` peers and `fnlb fnsim` node processes for bench/cluster.py.

Every process goes through a `ProcessGroup` (bench/_procs.py), so each is stopped by its PID
when the benchmark ends, however it ends. All addresses are on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench._procs import ProcessGroup, Started, StartError, free_port, wait_http_ok

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
_ADDRESS_LINE = re.compile(r"^127\.0\.0\.1:\d+$", re.MULTILINE)


@dataclass
class Peer:
    """One `fnlb serve` process: where its calls, management API and gossip listen."""

    name: str
    proc: Started
    listen: int
    mgmt: int
    gossip: int

    @property
    def pid(self) -> int:
        return self.proc.popen.pid

    @property
    def mgmt_url(self) -> str:
        return f"http://{HOST}:{self.mgmt}"

    @property
    def call_url(self) -> str:
        return f"http://{HOST}:{self.listen}"


@dataclass
class Fnsim:
    """One `fnlb fnsim` process and the node addresses it serves."""

    proc: Started
    addresses: list[str]

    def kill9(self) -> float:
        """SIGKILL the process and reap it; the monotonic time its sockets were gone."""
        os.kill(self.proc.popen.pid, signal.SIGKILL)
        self.proc.popen.wait(timeout=10)
        return time.monotonic()


def repo_env() -> dict[str, str]:
    """The environment for a child that must import `fnlb` and `bench` from this checkout."""
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def spawn_peer(
    group: ProcessGroup,
    name: str,
    state_dir: Path,
    *,
    join: Sequence[int] = (),
    hc_interval: float | None = None,
    extra: Sequence[str] = (),
) -> Peer:
    """Start one peer (not waiting for it); `join` lists seed gossip ports."""
    listen, mgmt, gossip = free_port(), free_port(), free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "fnlb", "serve",
        f"-listen={HOST}:{listen}", f"-mgmt-listen={HOST}:{mgmt}",
        f"-gossip-listen={HOST}:{gossip}", f"-node-name={name}", "-gossip-insecure",
        f"-state-dir={state_dir}", "-log-level=warning",
    ]  # fmt: skip
    cmd += [f"-join={HOST}:{port}" for port in join]
    if hc_interval is not None:
        cmd.append(f"-hc-interval={hc_interval:g}")
    cmd += list(extra)
    proc = group.start(name, cmd, cwd=REPO_ROOT, env=repo_env())
    return Peer(name, proc, listen, mgmt, gossip)


async def _ready(peer: Peer, within: float) -> None:
    await asyncio.to_thread(wait_http_ok, peer.proc, f"{peer.mgmt_url}/1/lb/peers", within)


async def start_peers(
    group: ProcessGroup,
    n: int,
    workdir: Path,
    session: aiohttp.ClientSession,
    *,
    prefix: str = "p",
    hc_interval: float | None = None,
    extra: Sequence[str] = (),
    within: float = 90.0,
) -> list[Peer]:
    """Start `n` peers that all join the first, and wait until each lists all `n` alive."""
    seed = spawn_peer(
        group, f"{prefix}0", workdir / f"{prefix}0", hc_interval=hc_interval, extra=extra
    )
    await _ready(seed, within)
    rest = [
        spawn_peer(
            group,
            f"{prefix}{i}",
            workdir / f"{prefix}{i}",
            join=[seed.gossip],
            hc_interval=hc_interval,
            extra=extra,
        )
        for i in range(1, n)
    ]
    await asyncio.gather(*(_ready(p, within) for p in rest))
    peers = [seed, *rest]
    names = {p.name for p in peers}
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        views = await asyncio.gather(*(alive_peers(session, p) for p in peers))
        if all(v == names for v in views):
            return peers
        await asyncio.sleep(0.2)
    raise StartError(f"{n} peers did not all list each other alive within {within:.0f}s")


async def alive_peers(session: aiohttp.ClientSession, peer: Peer) -> set[str]:
    """The names `peer` lists alive (empty when it cannot answer yet)."""
    try:
        async with session.get(f"{peer.mgmt_url}/1/lb/peers") as r:
            if r.status != 200:
                return set()
            body = await r.json()
    except (aiohttp.ClientError, OSError, ValueError):
        return set()
    return {p["name"] for p in body["peers"] if p["state"] == "alive"}


def spawn_fnsim(group: ProcessGroup, name: str, count: int, args: Sequence[str] = ()) -> Started:
    """Start `fnlb fnsim` with `count` nodes on free ports (see `fnsim_addresses`)."""
    cmd = [sys.executable, "-m", "fnlb", "fnsim", f"--listen={HOST}:0", f"--count={count}"]
    return group.start(name, [*cmd, *args], cwd=REPO_ROOT, env=repo_env())


def fnsim_addresses(proc: Started, count: int, timeout: float = 30.0) -> Fnsim:
    """Wait until a started fnsim printed its `count` node addresses."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise StartError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            text = proc.log.read_text(errors="replace")
        except OSError:
            text = ""
        found = _ADDRESS_LINE.findall(text)
        if len(found) >= count:
            return Fnsim(proc, found[:count])
        time.sleep(0.05)
    raise StartError(f"{proc.name}: {count} nodes not up in {timeout:.0f}s:\n{proc.log_tail()}")


def start_fnsim(
    group: ProcessGroup, name: str, count: int, args: Sequence[str] = (), timeout: float = 30.0
) -> Fnsim:
    """Start `fnlb fnsim` with `count` nodes on free ports; wait for it to print them all."""
    return fnsim_addresses(spawn_fnsim(group, name, count, args), count, timeout)


def memory_mb(pid: int) -> tuple[float, float]:
    """The process's resident set size now and at its peak (VmRSS, VmHWM), in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", float("nan")), fields.get("VmHWM", float("nan"))
