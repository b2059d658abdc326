"""Hosts with their own addresses: network namespaces joined by a bridge, made and unmade here.

Topology of one Network (names carry the creating pid, so parallel runs never clash):

    netns fnlbct-<pid>-<n>-sw        bridge br0, one veth end per Host (v-<host>)
    netns fnlbct-<pid>-<n>-<host>    lo + eth0 (the other veth end) with 10.213.0.<i>/24

The /24 exists only inside these namespaces: the root namespace gets no address, route or
interface, so tests cannot leak traffic onto the machine's network and two Networks (even
with the same subnet) are separate switches. Processes run inside a Host through
`ip netns exec`; the test process itself probes Hosts from short-lived threads that join the
namespace (see nsexec). Leaving the `with` block kills every process the Network started and
deletes every namespace, even after a failure; entering it first deletes namespaces of this
harness that a dead test run left behind.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from harness import faults
from harness.nsexec import NETNS_RUN_DIR, run_in_netns
from harness.procs import Process

T = TypeVar("T")

PREFIX = "fnlbct"
DEFAULT_SUBNET = "10.213.0"
_HOST_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_OURS = re.compile(rf"^{PREFIX}-(\d+)-")
_counter = 0


class HarnessError(RuntimeError):
    """A command the harness needed (ip, nft, tc) failed; the message carries its stderr."""


def _run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if check and proc.returncode != 0:
        raise HarnessError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


@functools.cache
def unavailable_reason() -> str | None:
    """Why namespace tests cannot run here (not root, a tool missing, no netns), or None."""
    if os.geteuid() != 0:
        return "cluster tests need root (network namespaces, nftables)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables"), ("tc", "iproute2")):
        if shutil.which(tool) is None:
            return f"cluster tests need `{tool}` (Debian package {package}; scripts/bootstrap.sh)"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    try:
        _run(["ip", "netns", "add", probe])
        _run(["ip", "netns", "exec", probe, "nft", "list", "ruleset"])
    except (HarnessError, OSError, subprocess.TimeoutExpired) as e:
        return f"cannot create network namespaces with nftables here: {e}"
    finally:
        _run(["ip", "netns", "del", probe], check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def _kill_everything_in(netns: str) -> None:
    """SIGKILL whatever still runs in one of our namespaces (our children and theirs)."""
    out = _run(["ip", "netns", "pids", netns], check=False)
    for word in out.split():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(word), signal.SIGKILL)


def _delete_netns(netns: str) -> None:
    _kill_everything_in(netns)
    _run(["ip", "netns", "del", netns], check=False)


def sweep_stale() -> list[str]:
    """Delete namespaces (and log dirs) of this harness whose creating process is gone.

    The names of the namespaces deleted.
    """
    swept = []
    for name in _list_netns():
        m = _OURS.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _delete_netns(name)
            swept.append(name)
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*-*"):
        m = _OURS.match(path.name)
        if m and path.is_dir() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(path, ignore_errors=True)
    return swept


def our_namespaces(pid: int | None = None) -> list[str]:
    """Names of this harness's namespaces (made by process `pid`, default: this one)."""
    mine = f"{PREFIX}-{os.getpid() if pid is None else pid}-"
    return [name for name in _list_netns() if name.startswith(mine)]


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Host:
    """One machine of the test cluster: a namespace with one address on the Network."""

    def __init__(self, network: Network, name: str, netns: str, address: str, veth: str):
        self.network = network
        self.name = name
        self.netns = netns
        self.address = address
        #: the switch-side end of this Host's cable (tc on it shapes what the Host receives)
        self.switch_veth = veth
        self.processes: list[Process] = []

    def addr(self, port: int) -> str:
        """`address:port` on this Host, as fnlb's flags want it."""
        return f"{self.address}:{port}"

    def spawn(
        self,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Process:
        """Start `argv` inside this Host; output goes to a log file in the Network's workdir."""
        label = name or Path(argv[0]).name
        log = self.network.workdir / f"{self.name}-{label}.log"
        proc = Process(f"{self.name}/{label}", self.netns, argv, log, env=env, cwd=cwd)
        self.processes.append(proc)
        return proc

    def adopt(self, proc: Process) -> Process:
        """Track a process restarted from one of ours so teardown kills it too."""
        self.processes.append(proc)
        return proc

    def run(self, fn: Callable[[], T], *, timeout: float | None = 60.0) -> T:
        """Call `fn()` from a thread inside this Host (its sockets live here)."""
        return run_in_netns(self.netns, fn, timeout=timeout)

    def exec(self, *argv: str, check: bool = True) -> str:
        """Run a short command inside this Host (`ip netns exec`); its stdout."""
        return _run(["ip", "netns", "exec", self.netns, *argv], check=check)

    def http(
        self,
        method: str,
        url_host: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> HttpReply:
        """One HTTP request from this Host to `url_host` ("ip:port"); OSError if unreachable."""

        def request() -> HttpReply:
            host, _, port = url_host.rpartition(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
            try:
                conn.request(method, path, body=body, headers=dict(headers or {}))
                resp = conn.getresponse()
                data = resp.read()
                return HttpReply(resp.status, dict(resp.getheaders()), data)
            finally:
                conn.close()

        return self.run(request, timeout=timeout * 3 + 5)

    def wait_http(self, url_host: str, path: str = "/", *, timeout: float = 15.0) -> HttpReply:
        """Poll until `url_host` answers `path` with any status below 500; that reply."""
        deadline = time.monotonic() + timeout
        last: Exception | str = "no attempt"
        while time.monotonic() < deadline:
            try:
                reply = self.http("GET", url_host, path, timeout=1.0)
                if reply.status < 500:
                    return reply
                last = f"HTTP {reply.status}"
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise TimeoutError(
            f"{url_host}{path} not answering from {self.name} after {timeout} s: {last}"
        )

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address} netns={self.netns}>"


class ActiveFault:
    """A fault in force; `remove()` or leaving its `with` block lifts it."""

    def __init__(self, network: Network, fault: faults.Fault) -> None:
        self.network = network
        self.fault = fault
        self.since = time.monotonic()

    def remove(self) -> None:
        self.network.lift(self)

    def __enter__(self) -> ActiveFault:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


class Bandwidth:
    """A tc tbf limit on one Host's link; `remove()` or leaving its `with` block lifts it."""

    def __init__(self, network: Network, devices: list[tuple[str, str]]) -> None:
        self.network = network
        self.devices = devices  # (netns, device)
        self.removed = False

    def remove(self) -> None:
        if not self.removed:
            self.removed = True
            for netns, dev in self.devices:
                _run(["ip", "netns", "exec", netns, *faults.tbf_clear_command(dev)], check=False)

    def __enter__(self) -> Bandwidth:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


class Network:
    """A private switch and the Hosts on it; a context manager that cleans up after itself."""

    def __init__(self, *, subnet: str = DEFAULT_SUBNET, keep_workdir: bool = False) -> None:
        global _counter
        _counter += 1
        if not re.fullmatch(r"\d+\.\d+\.\d+", subnet):
            raise ValueError(f"subnet {subnet!r} is not the first three octets of a /24")
        self.subnet = subnet
        self.prefix = f"{PREFIX}-{os.getpid()}-{_counter}"
        self.switch = f"{self.prefix}-sw"
        self.hosts: dict[str, Host] = {}
        self.faults: list[ActiveFault] = []
        self.bandwidths: list[Bandwidth] = []
        self.keep_workdir = keep_workdir
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self._started = False

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Network:
        sweep_stale()
        self._started = True
        _run(["ip", "netns", "add", self.switch])
        self._ns(self.switch, "ip", "link", "add", "br0", "type", "bridge")
        self._ns(self.switch, "ip", "link", "set", "br0", "up")
        return self

    def close(self) -> None:
        """Kill every process we started, delete every namespace; safe to call twice."""
        for host in self.hosts.values():
            for proc in host.processes:
                if proc.alive():
                    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                        proc.cont()
                        proc.kill9()
        for host in self.hosts.values():
            _delete_netns(host.netns)
        if self._started:
            _delete_netns(self.switch)
        self.hosts.clear()
        self.faults.clear()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Network:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def _ns(netns: str, *argv: str, stdin: str | None = None) -> str:
        return _run(["ip", "netns", "exec", netns, *argv], stdin=stdin)

    # -- hosts -----------------------------------------------------------------------

    def add_host(self, name: str) -> Host:
        """A new Host `name` (lowercase, up to 12 characters) with the next free address."""
        if not _HOST_NAME.match(name):
            raise ValueError(f"host name {name!r}: lowercase letters and digits, 1-12")
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists")
        index = len(self.hosts) + 1
        if index > 253:
            raise ValueError("a /24 holds at most 253 hosts")
        netns = f"{self.prefix}-{name}"
        veth = f"v-{name}"
        address = f"{self.subnet}.{index}"
        _run(["ip", "netns", "add", netns])
        host = Host(self, name, netns, address, veth)
        self.hosts[name] = host
        sw = ["ip", "-n", self.switch]
        _run([*sw, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
        _run([*sw, "link", "set", veth, "master", "br0"])
        _run([*sw, "link", "set", veth, "up"])
        hn = ["ip", "-n", netns]
        _run([*hn, "link", "set", "lo", "up"])
        _run([*hn, "addr", "add", f"{address}/24", "dev", "eth0"])
        _run([*hn, "link", "set", "eth0", "up"])
        return host

    def add_hosts(self, *names: str) -> list[Host]:
        return [self.add_host(name) for name in names]

    def addresses(self) -> dict[str, str]:
        return {name: host.address for name, host in self.hosts.items()}

    def processes(self) -> list[Process]:
        return [proc for host in self.hosts.values() for proc in host.processes]

    def log_tails(self, lines: int = 30) -> str:
        """The end of every process log: what a failing test should print."""
        parts = []
        for proc in self.processes():
            parts.append(f"==== {proc!r} ({proc.log_path.name})\n{proc.log_tail(lines)}")
        return "\n".join(parts)

    # -- faults ----------------------------------------------------------------------

    def apply(self, fault: faults.Fault) -> ActiveFault:
        """Put `fault` in force now; the handle lifts it (also as a context manager)."""
        for name in fault.hosts():
            if name not in self.hosts:
                raise ValueError(f"unknown host {name!r}")
        active = ActiveFault(self, fault)
        self.faults.append(active)
        self._reload()
        return active

    def lift(self, active: ActiveFault) -> None:
        if active in self.faults:
            self.faults.remove(active)
            self._reload()

    def heal(self) -> None:
        """Lift every network fault and bandwidth limit."""
        self.faults.clear()
        self._reload()
        for bw in self.bandwidths:
            bw.remove()
        self.bandwidths.clear()

    def _reload(self) -> None:
        # Every Host, every time: a fault is enforced at the receivers, which may be any
        # Host (a black hole is everyone ignoring one host); a few nft calls are cheap.
        addresses = self.addresses()
        active = [f.fault for f in self.faults]
        for name in self.hosts:
            script = faults.render_ruleset(name, addresses, active)
            self._ns(self.hosts[name].netns, "nft", "-f", "-", stdin=script)

    @staticmethod
    def _names(hosts: Iterable[Host | str]) -> frozenset[str]:
        return frozenset(h.name if isinstance(h, Host) else h for h in hosts)

    def partition(self, side_a: Iterable[Host | str], side_b: Iterable[Host | str]) -> ActiveFault:
        """Cut every path between the two sides, both ways (a split brain)."""
        a, b = self._names(side_a), self._names(side_b)
        if a & b:
            raise ValueError(f"hosts on both sides of a partition: {sorted(a & b)}")
        return self.apply(faults.Partition(a, b))

    def one_way(self, src: Host | str, dst: Host | str) -> ActiveFault:
        """Drop packets from `src` to `dst`; the reverse direction still works."""
        (s,), (d,) = self._names([src]), self._names([dst])
        return self.apply(faults.OneWay(s, d))

    def blackhole(self, host: Host | str) -> ActiveFault:
        """Drop every packet into and out of `host` (alive, but nobody can reach it)."""
        (name,) = self._names([host])
        return self.apply(faults.Blackhole(name))

    def loss(
        self,
        host: Host | str,
        pct: float,
        *,
        proto: faults.Proto = "all",
        port: int | None = None,
        direction: faults.Direction = "both",
    ) -> ActiveFault:
        """Drop `pct` % of matching packets at `host` (see faults.Loss for the matching)."""
        (name,) = self._names([host])
        return self.apply(faults.Loss(name, pct, proto, port, direction))

    @contextlib.contextmanager
    def loss_everywhere(
        self, pct: float, *, proto: faults.Proto = "all", port: int | None = None
    ) -> Iterator[list[ActiveFault]]:
        """`pct` % loss per packet on every link: dropped at the receiving Host."""
        active = [
            self.loss(h, pct, proto=proto, port=port, direction="in") for h in self.hosts.values()
        ]
        try:
            yield active
        finally:
            for a in active:
                a.remove()

    def bandwidth(self, host: Host | str, rate_kbit: int, *, both_ways: bool = True) -> Bandwidth:
        """Limit what `host` sends (and, with `both_ways`, receives) to `rate_kbit` kbit/s."""
        (name,) = self._names([host])
        h = self.hosts[name]
        devices = [(h.netns, "eth0")]
        if both_ways:
            devices.append((self.switch, h.switch_veth))
        for netns, dev in devices:
            self._ns(netns, *faults.tbf_command(dev, rate_kbit))
        bw = Bandwidth(self, devices)
        self.bandwidths.append(bw)
        return bw
