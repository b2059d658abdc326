"""Start the programs of a test cluster in Hosts and ask them how they see the world.

    fnsim      `python -m fnlb fnsim --listen IP:PORT` (an emulated Fn server)
    fnlb       `python -m fnlb serve -listen IP:PORT -mgmt-listen IP:PORT -nodes ...`
    toxiproxy  `toxiproxy-server -host IP -port PORT` when on PATH, else ours

Each start waits until the program answers, so a scenario's first call never races its
startup, and returns the Process (plus, for toxiproxy, a client for its API).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from harness.netns import Host
from harness.procs import Process, python_argv
from harness.toxiproxy_client import ToxiproxyClient

FNSIM_PORT = 8080
FNLB_PORT = 8081
FNLB_MGMT_PORT = 8082
GOSSIP_PORT = 8946
TOXIPROXY_PORT = 8474


def start_fnsim(host: Host, *, port: int = FNSIM_PORT, flags: Sequence[str] = ()) -> Process:
    """An emulated Fn server on `host` (no cold starts unless `flags` ask: calls stay quick)."""
    argv = python_argv("fnlb", "fnsim", "--listen", host.addr(port), "--cold-start-ms", "0", *flags)
    proc = host.spawn(argv, name=f"fnsim{port}")
    _wait(host, host.addr(port), "/version", proc)
    return proc


@dataclass(frozen=True, slots=True)
class Fnlb:
    """One fnlb process and where to reach it."""

    proc: Process
    host: Host
    traffic: str  # ip:port for calls
    mgmt: str  # ip:port of the management API


def start_fnlb(
    host: Host,
    nodes: Sequence[str],
    *,
    port: int = FNLB_PORT,
    mgmt_port: int = FNLB_MGMT_PORT,
    flags: Mapping[str, object] | None = None,
    name: str = "fnlb",
) -> Fnlb:
    """`fnlb serve` on `host` with the original fnlb's flags; `flags` adds or overrides them.

    Health checks default to every second, one failure to go offline, so faults show within
    a scenario's few seconds rather than the original's 6.
    """
    settings: dict[str, object] = {
        "listen": host.addr(port),
        "mgmt-listen": host.addr(mgmt_port),
        "nodes": ",".join(nodes),
        "hc-interval": 1,
        "hc-unhealthy": 1,
        "hc-timeout": 1,
        "log-level": "info",
    }
    settings.update(flags or {})
    argv = python_argv("fnlb", "serve")
    for key, value in settings.items():
        argv += [f"-{key}", str(value)]
    proc = host.spawn(argv, name=name)
    lb = Fnlb(proc, host, host.addr(port), host.addr(mgmt_port))
    _wait(host, lb.mgmt, "/1/lb/nodes", proc)
    return lb


def new_gossip_key() -> str:
    """A fresh base64 AES-256 key, as `fnlb keygen` prints."""
    return base64.b64encode(os.urandom(32)).decode()


def peer_flags(host: Host, peers: Sequence[Host], key: str) -> dict[str, object]:
    """Flags that make the fnlb on `host` a cluster peer of the fnlbs on `peers`.

    Gossip on GOSSIP_PORT of the Host's address, joining every other peer, with the shared
    key, and a state directory of its own in the Network's workdir (kept across restarts
    of the process, gone with the Network). The node name is the Host's name: namespaces
    share the machine's hostname, so fnlb's default (hostname:port) would be one name for
    every peer.
    """
    state_dir = host.network.workdir / f"state-{host.name}"
    state_dir.mkdir(exist_ok=True)
    others = [p.addr(GOSSIP_PORT) for p in peers if p is not host]
    return {
        "gossip-listen": host.addr(GOSSIP_PORT),
        "join": ",".join(others),
        "gossip-key": key,
        "state-dir": state_dir,
        "node-name": host.name,
    }


def put_node(observer: Host, mgmt: str, node: str) -> None:
    """`PUT /1/lb/nodes {"node": node}`; RuntimeError unless fnlb acknowledges it (200)."""
    _node_change(observer, mgmt, "PUT", node)


def delete_node(observer: Host, mgmt: str, node: str) -> None:
    """`DELETE /1/lb/nodes {"node": node}`; RuntimeError unless acknowledged (200)."""
    _node_change(observer, mgmt, "DELETE", node)


def _node_change(observer: Host, mgmt: str, method: str, node: str) -> None:
    body = json.dumps({"node": node}).encode()
    reply = observer.http(method, mgmt, "/1/lb/nodes", body=body, timeout=10.0)
    if reply.status != 200:
        raise RuntimeError(
            f"{method} /1/lb/nodes {node} on {mgmt}: HTTP {reply.status} {reply.body[:200]!r}"
        )


def restart_fnlb(lb: Fnlb) -> Fnlb:
    """The same fnlb command started again on the same Host (after a kill or a stop)."""
    proc = lb.host.adopt(lb.proc.restarted())
    _wait(lb.host, lb.mgmt, "/1/lb/nodes", proc)
    return Fnlb(proc, lb.host, lb.traffic, lb.mgmt)


def node_states(observer: Host, mgmt: str) -> dict[str, str]:
    """fnlb's `GET /1/lb/nodes` as seen from `observer`: node -> "online" | "offline"."""
    reply = observer.http("GET", mgmt, "/1/lb/nodes", timeout=3.0)
    if reply.status != 200:
        raise RuntimeError(f"GET /1/lb/nodes on {mgmt}: HTTP {reply.status} {reply.body[:200]!r}")
    nodes = reply.json().get("nodes", {})
    return {str(k): str(v) for k, v in nodes.items()}


def routable(observer: Host, mgmt: str) -> set[str]:
    """The nodes fnlb at `mgmt` would route to now."""
    return {node for node, state in node_states(observer, mgmt).items() if state == "online"}


def wait_until(
    what: str, check: Callable[[], bool], *, timeout: float, interval: float = 0.1
) -> float:
    """Poll `check` until true; the seconds it took (TimeoutError naming `what` if never)."""
    start = time.monotonic()
    last_error: Exception | None = None
    while True:
        try:
            if check():
                return time.monotonic() - start
        except (OSError, RuntimeError, ValueError) as e:
            last_error = e
        if time.monotonic() - start > timeout:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"{what}: not within {timeout} s{detail}")
        time.sleep(interval)


def wait_routable(observer: Host, mgmt: str, expected: set[str], *, timeout: float) -> float:
    """Wait until fnlb at `mgmt` routes to exactly `expected`; the seconds it took."""
    return wait_until(
        f"routable set of {mgmt} == {sorted(expected)}",
        lambda: routable(observer, mgmt) == expected,
        timeout=timeout,
    )


def toxiproxy_argv(host: Host, port: int) -> list[str]:
    """Shopify's toxiproxy-server when it is on PATH (the real thing), else ours."""
    if shutil.which("toxiproxy-server"):
        return ["toxiproxy-server", "-host", host.address, "-port", str(port)]
    return python_argv("harness.toxiproxy", "-host", host.address, "-port", str(port))


def start_toxiproxy(
    host: Host, observer: Host, *, port: int = TOXIPROXY_PORT
) -> tuple[Process, ToxiproxyClient]:
    """A toxiproxy on `host`; its API client sends requests from `observer`."""
    proc = host.spawn(toxiproxy_argv(host, port), name="toxiproxy")
    client = ToxiproxyClient.for_host(observer, host.addr(port))
    deadline = time.monotonic() + 20
    while True:
        try:
            client.version()
            return proc, client
        except (OSError, RuntimeError):
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"toxiproxy did not start:\n{proc.log_tail()}") from None
            time.sleep(0.1)


def _wait(host: Host, address: str, path: str, proc: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited {proc.returncode}:\n{proc.log_tail()}")
        try:
            if host.http("GET", address, path, timeout=1.0).status < 500:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{proc.name} not answering {path} after {timeout} s:\n{proc.log_tail()}"
            )
        time.sleep(0.1)


def peer_states(observer: Host, mgmt: str) -> dict[str, str]:
    """fnlb's `GET /1/lb/peers` seen from `observer`: peer name -> "alive" | "suspect" | ..."""
    reply = observer.http("GET", mgmt, "/1/lb/peers", timeout=3.0)
    if reply.status != 200:
        raise RuntimeError(f"GET /1/lb/peers on {mgmt}: HTTP {reply.status} {reply.body[:200]!r}")
    return {str(p["name"]): str(p["state"]) for p in reply.json().get("peers", [])}
