"""Cluster mode: this peer's node list, health and view, kept in step with its peers by gossip.

`ClusterService` is the `NodeDirectory` of a peer in a cluster (a lone fnlb uses
`NodeRegistry`). It drives the sans-I/O `ClusterState` from three directions:

- the management API: `put`/`delete` change the cluster-wide node set. **Acknowledged means
  kept**: the answer comes only after the change is fsync'd in `-state-dir` (when given) and
  held by `-write-acks` other live peers (each of which fsyncs it before answering), tried in
  turn over their management ports. The answer says how many peers hold it (`held_by`,
  ourselves included). When fewer peers could take it than asked, the answer is 503: the change
  is kept here and spreads by gossip, and retrying is harmless;
- the health checker: our verdicts go into the state, which broadcasts the changes; a peer's
  "offline" for a node we still see online triggers an immediate check of our own;
- gossip: membership (who may vote on health), broadcasts and push-pull full states.

Restart: the state file gives back the node set, the clock and the peers we knew, which are
joined again along with `-join`. `-nodes` seeds the set only on a start without saved state:
afterwards the saved set is the truth, so a restart cannot resurrect a node that was deleted
while it ran. And a fresh peer that has peers to join seeds only once it holds the cluster's
set (the first peer's full state merged), and then only the addresses the cluster has no entry
for, live or deleted: fresh stamps on an old `-nodes` list would otherwise beat the cluster's
deletes and bring those nodes back everywhere. When no join target answers the first attempt
(the whole cluster starting at once), or there is nothing to join, it seeds at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import socket
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import msgpack
from aiohttp import web

from fnlb.api.jsonio import json_error, json_response
from fnlb.cluster.hlc import HybridClock, Timestamp
from fnlb.cluster.load import LocalLoad
from fnlb.cluster.nodeset import Entry, NodeSet
from fnlb.cluster.persist import StateDir
from fnlb.cluster.registry import Listener
from fnlb.cluster.state import ClusterState
from fnlb.cluster.view import NodeView
from fnlb.config import DEFAULT_GOSSIP_PORT, Settings, node_list, parse_listen
from fnlb.errors import BadRequest, RemoteProtocolError
from fnlb.gossip.member import EventKind, MemberEvent
from fnlb.gossip.messages import MemberState
from fnlb.gossip.runtime import GossipRuntime
from fnlb.health.node_metrics import NodeMetrics
from fnlb.health.verdict import NodeHealth
from fnlb.routing.backoff import decode_entries
from fnlb.routing.router import Router

log = logging.getLogger("fnlb.cluster")

ACK_TIMEOUT_S = 2.0
LOAD_INTERVAL_S = 0.3
"""How often each peer gossips its load digest: figures reach every peer within ~0.5 s."""
SEED_WAIT_S = 15.0
"""A fresh peer that joined but never got a peer's full state seeds `-nodes` after this."""
IDLE_DIGESTS = 2
"""A peer with no function to report says so this many times (twice, in case one datagram is
lost) and then stays silent until it has calls again: the others' copy of its last digest goes
stale after 5 s, which reads as idle too. Idle digests sent on, even every 2 s to every peer,
made an idle cluster's gossip grow with N instead of staying flat as SWIM's does."""
HOT_FUNCTIONS = 10
_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)


def now_ms() -> int:
    return int(time.time() * 1000)


def peer_name(settings: Settings) -> str:
    """`-node-name`, else hostname:gossip-port (a random suffix when the port is chosen later)."""
    if settings.node_name:
        return settings.node_name
    port = (
        parse_listen(settings.gossip_listen)[1] if settings.gossip_listen else DEFAULT_GOSSIP_PORT
    )
    suffix = str(port) if port else f"0-{secrets.token_hex(3)}"
    return f"{socket.gethostname()}:{suffix}"


class _Delegate:
    """Hands gossip's callbacks to the state with the wall clock they lack."""

    def __init__(self, service: ClusterService) -> None:
        self._service = service

    def take_broadcasts(self) -> list[tuple[bytes, bytes]]:
        return self._service.state.take_broadcasts()

    def take_direct(self) -> list[tuple[bytes, bytes]]:
        return self._service.state.take_direct()

    def notify_broadcast(self, origin: str, key: bytes, payload: bytes) -> None:
        self._service.merged(lambda s: s.merge_broadcast(payload, now_ms()), "broadcast")

    def local_state(self, join: bool) -> bytes:
        return self._service.state.local_state(join)

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        merged = self._service.merged(lambda s: s.merge_full(data, now_ms()), "push-pull")
        # `join` is set on a joiner's request: that peer is new too and may know nothing of
        # the cluster's deletes, so only answers and established peers' exchanges count.
        if merged and not join:
            self._service.seed_nodes()


class ClusterService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = peer_name(settings)
        self.state_dir = StateDir(settings.state_dir) if settings.state_dir else None
        saved = None
        if self.state_dir is not None:
            self.state_dir.ensure()
            saved = self.state_dir.load()
        self.known_peers: list[str] = []
        clock = HybridClock(self.name)
        if saved is not None:
            last = saved.get("clock")
            if isinstance(last, list):
                clock.witness(Timestamp.from_wire(last))
            nodeset = NodeSet.from_snapshot(saved.get("nodes"), clock)
            self.known_peers = [p for p in saved.get("peers", []) if isinstance(p, str)]
        else:
            nodeset = NodeSet(clock)
        self.state = ClusterState(
            self.name,
            healthy=settings.hc_healthy,
            unhealthy=settings.hc_unhealthy,
            nodeset=nodeset,
            clock=now_ms,
        )
        self._pending_seed: list[str] | None = None
        """`-nodes` still to seed once we hold the cluster's set (see the module docstring)."""
        if saved is None:
            self._pending_seed = node_list(settings.nodes)
        self.local_load = LocalLoad(epoch=now_ms())
        self._listeners: list[Listener] = []
        self._known_nodes: set[str] = set(self.state.nodes.members())
        self._save_lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.runtime: GossipRuntime | None = None
        self.mgmt_address = ""
        self.drops: dict[str, int] = {}
        self.write_acks: dict[str, int] = {"not_needed": 0, "held": 0, "short": 0}
        """Node-list changes by how `-write-acks` went (read by /metrics)."""
        self.check_now: Any = None
        """Set by the server: `check_now(node)` runs a health check out of turn."""

    # -- NodeDirectory -----------------------------------------------------------------

    @property
    def view(self) -> NodeView:
        return self.state.view

    def nodes(self) -> list[str]:
        return list(self.state.nodes.members())

    def health(self, node: str) -> NodeHealth | None:
        return self.state.health.get(node) if node in self.state.nodes else None

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def record_check(self, node: str, ok: bool, error: str = "") -> None:
        self.state.record_check(node, ok, now_ms(), error)

    def record_metrics(self, node: str, metrics: NodeMetrics) -> None:
        self.state.record_metrics(node, metrics)

    @property
    def node_metrics(self) -> Mapping[str, NodeMetrics]:
        return self.state.node_metrics

    async def put(self, node: str) -> dict[str, Any]:
        delta = self.state.add_node(node, now_ms())
        self._nodes_changed()
        held = await self._keep(delta)
        return {"msg": "node added", "held_by": held}

    async def delete(self, node: str) -> dict[str, Any]:
        delta = self.state.remove_node(node, now_ms())
        self._nodes_changed()
        held = await self._keep(delta)
        return {"msg": "node deleted", "held_by": held}

    def seed_nodes(self) -> None:
        """Add the `-nodes` addresses the set has no entry for (live or deleted); once only."""
        pending, self._pending_seed = self._pending_seed, None
        if not pending:
            return
        for node in pending:
            if self.state.nodes.get(node) is None:
                self.state.add_node(node, now_ms())
        self._nodes_changed()
        self._dirty.set()

    async def _seed_when_joined(self, opened: int) -> None:
        """Seed `-nodes` if no join target answered the first attempt (a retry opened new
        join streams) or no full state came within SEED_WAIT_S; an answer seeds it sooner."""
        assert self.runtime is not None
        deadline = time.monotonic() + SEED_WAIT_S
        while self._pending_seed is not None and time.monotonic() < deadline:
            if self.runtime.member.stats.get("streams_join", 0) > opened:
                break
            await asyncio.sleep(0.1)
        self.seed_nodes()

    # -- keeping a change ----------------------------------------------------------------

    async def _keep(self, delta: list[Entry]) -> int:
        """Persist, then have `write_acks` live peers hold `delta`; how many hold it."""
        await self.save()
        live = self._live_members()
        wanted = min(self.settings.write_acks, len(live))
        if wanted == 0:
            self.write_acks["not_needed"] += 1
            return 1
        payload = msgpack.packb(["n", [list(e.to_wire()) for e in delta]], use_bin_type=True)
        held = 1
        for address in self._peer_mgmt_addresses():
            if held - 1 >= wanted:
                break
            if await self._ask_to_hold(address, payload):
                held += 1
        self.write_acks["held" if held - 1 >= wanted else "short"] += 1
        if held - 1 < wanted:
            raise BadRequest(
                f"kept on this peer but only {held - 1} of {wanted} other live peers confirmed "
                "it; it will still spread by gossip; retrying is safe",
                status=503,
            )
        return held

    async def _ask_to_hold(self, address: str, payload: bytes) -> bool:
        assert self._session is not None
        try:
            async with self._session.post(
                f"http://{address}/1/lb/cluster/hold",
                data=payload,
                headers={"Content-Type": "application/msgpack"},
                timeout=aiohttp.ClientTimeout(total=ACK_TIMEOUT_S),
            ) as resp:
                await resp.read()
                if resp.status != 200:
                    log.warning(
                        "peer refused to hold a change",
                        extra={"peer": address, "status": resp.status},
                    )
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("peer did not hold a change", extra={"peer": address, "error": str(e)})
            return False

    async def handle_hold(self, request: web.Request) -> web.Response:
        """`POST /1/lb/cluster/hold`: a peer asks us to merge and persist its change.

        200 "held" only when every entry was applied (or was already outranked here, which
        holds it as well); 409 when the merge refused one (stamped too far in our future, or
        below our tombstone floor), so that the writer does not count us.
        """
        data = await request.content.read(1 << 20)
        try:
            result = self.state.merge_node_change(data, now_ms())
        except RemoteProtocolError as e:
            self.drops[e.reason] = self.drops.get(e.reason, 0) + 1
            return json_error(400, f"not a node-set change: {e}")
        if result.members_changed:
            self._nodes_changed()
        await self.save()  # even if nothing won here: what we hold may not be on disk yet
        if result.refused_drift or result.refused_ghosts:
            return json_error(
                409,
                f"not held: {len(result.refused_drift)} entries stamped more than "
                f"{self.state.nodes.clock.max_drift_ms} ms ahead of this peer's clock, "
                f"{result.refused_ghosts} below its tombstone collection floor",
            )
        return json_response({"msg": "held"})

    async def save(self) -> None:
        """Write the node set, clock and known peers to the state dir (no-op without one)."""
        if self.state_dir is None:
            return
        async with self._save_lock:
            self._dirty.clear()
            snapshot = {
                "nodes": self.state.nodes.snapshot(),
                "clock": list(self.state.nodes.clock.last.to_wire()),
                "peers": self._peer_gossip_addresses(),
            }
            await asyncio.to_thread(self.state_dir.save, snapshot)

    # -- gossip side ---------------------------------------------------------------------

    def merged(self, apply: Any, what: str) -> bool:
        """Apply a peer's message to the state; drop and count it if malformed (False)."""
        try:
            changed = apply(self.state)
        except RemoteProtocolError as e:
            self.drops[e.reason] = self.drops.get(e.reason, 0) + 1
            log.debug("dropped a cluster message", extra={"via": what, "reason": e.reason})
            return False
        if changed:
            self._nodes_changed()
            self._dirty.set()
        self._run_rechecks()
        return True

    def on_backoff(self, router: Router) -> None:
        """Hand peers' routing back-off messages to `router` (malformed ones are counted)."""

        def merge(message: bytes) -> None:
            try:
                router.backoff.merge(decode_entries(message), time.time())
            except RemoteProtocolError as e:
                self.drops[e.reason] = self.drops.get(e.reason, 0) + 1

        self.state.on_backoff = merge

    def _nodes_changed(self) -> None:
        members = set(self.state.nodes.members())
        added = members - self._known_nodes
        removed = self._known_nodes - members
        self._known_nodes = members
        for listener in self._listeners:
            for node in sorted(added):
                listener(node, True)
            for node in sorted(removed):
                listener(node, False)

    def _run_rechecks(self) -> None:
        nodes, self.state.recheck = self.state.recheck, []
        if self.check_now is not None:
            for node in nodes:
                self.check_now(node, confirm=True)

    def _on_member(self, event: MemberEvent) -> None:
        if event.kind in (EventKind.DEAD, EventKind.LEFT):
            self.state.load.peer_left(event.name, time.time())
        elif event.kind in (EventKind.JOINED, EventKind.UPDATED) and self.state_dir is not None:
            self._dirty.set()  # save the peers we know: a restart rejoins them without -join
        self._refresh_alive()

    def _refresh_alive(self) -> None:
        if self.runtime is None:
            return
        self.state.set_alive(m.name for m in self.runtime.members() if m.state in _LIVE)

    def _live_members(self) -> list[Any]:
        if self.runtime is None:
            return []
        return [m for m in self.runtime.members() if m.state in _LIVE and m.name != self.name]

    def _peer_mgmt_addresses(self) -> list[str]:
        out = []
        for m in self._live_members():
            port = _meta_mgmt_port(m.meta)
            if port:
                out.append(f"{m.addr[0]}:{port}")
        return out

    def _peer_gossip_addresses(self) -> list[str]:
        return sorted({f"{m.addr[0]}:{m.addr[1]}" for m in self._live_members()})

    async def start(self, mgmt_port: int) -> None:
        """Join the cluster; `mgmt_port` is where peers reach our management API."""
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        settings = dataclasses.replace(
            self.settings,
            node_name=self.name,
            join=tuple(dict.fromkeys((*self.settings.join, *self.known_peers))),
        )
        meta = msgpack.packb({"m": mgmt_port}, use_bin_type=True)
        self.runtime = GossipRuntime.from_settings(settings, delegate=_Delegate(self), meta=meta)
        self.runtime.add_listener(self._on_member)
        await self.runtime.start()
        self._refresh_alive()
        loop = asyncio.get_running_loop()
        if self._pending_seed is not None:
            opened = self.runtime.member.stats.get("streams_join", 0)
            if opened == 0:  # nothing to join (we are the cluster) or no target resolved
                self.seed_nodes()
            else:
                self._tasks.append(loop.create_task(self._seed_when_joined(opened)))
        self._tasks.append(loop.create_task(self._housekeeping()))
        self._tasks.append(loop.create_task(self._share_load()))
        if self.state_dir is not None:
            await self.save()

    async def _housekeeping(self) -> None:
        """Refresh who is alive, persist merged changes, collect old tombstones."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._dirty.wait()
            self._refresh_alive()
            if self.state.nodes.collect_tombstones(now_ms()):
                self._dirty.set()
            if self._dirty.is_set():
                self._dirty.clear()
                await self.save()

    async def _share_load(self) -> None:
        """Every LOAD_INTERVAL_S, gossip our load digest; every second, expire idle figures."""
        last_sweep = 0.0
        idle_sent = 0
        while True:
            await asyncio.sleep(LOAD_INTERVAL_S)
            now = time.time()
            idle = self.local_load.function_count == 0
            idle_sent = idle_sent + 1 if idle else 0
            if idle_sent <= IDLE_DIGESTS:
                digest = self.local_load.digest(now, stamp_ms=int(now * 1000))
                self.state.queue_load(digest, now)
            if now - last_sweep >= 1.0:
                last_sweep = now
                self.local_load.sweep(now, limit=1000)
                self.state.load.expire(now)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)  # stop()'s own cancel stays
        self._tasks.clear()
        if self.runtime is not None:
            await self.runtime.stop()
        with contextlib.suppress(OSError):
            await self.save()
        if self._session is not None:
            await self._session.close()

    def peers_report(self) -> list[dict[str, Any]]:
        if self.runtime is None:
            return []
        return [
            {
                "name": m.name,
                "address": f"{m.addr[0]}:{m.addr[1]}",
                "state": m.state.name.lower(),
                "incarnation": m.incarnation,
            }
            for m in sorted(self.runtime.members(), key=lambda m: m.name)
        ]

    def cluster_report(self) -> dict[str, Any]:
        """`GET /1/lb/cluster`: peers, nodes with every verdict, and the view's checksum."""
        return {
            "self": self.name,
            "version": self.state.version,
            "checksum": self.state.checksum(),
            "load_checksum": self.state.load_checksum(now_ms()),
            "peers": self.peers_report(),
            "nodes": [
                {
                    "address": r.address,
                    "cluster": r.cluster,
                    "routable_here": r.routable_here,
                    "verdicts": {p: "online" if ok else "offline" for p, ok in r.verdicts.items()},
                    "metrics": _metrics_report(self.state.node_metrics.get(r.address)),
                }
                for r in self.state.report()
            ],
            "hot_functions": self.hot_functions(),
            "drops": {**self.drops, **self.state.refused},
        }

    def hot_functions(self) -> list[dict[str, Any]]:
        """The busiest functions cluster-wide: rate, in-flight and the nodes they use."""
        now = time.time()
        load = self.state.load
        out = []
        for fn, rate in load.hot_functions(HOT_FUNCTIONS, now):
            f = load.function_load(fn, now)
            out.append(
                {
                    "function": fn,
                    "rate": round(rate, 2),
                    "in_flight": f.in_flight,
                    "nodes": sorted(f.nodes),
                }
            )
        return out


def _metrics_report(m: NodeMetrics | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "queued": m.queued,
        "running": m.running,
        "mem_used": m.mem_used,
        "mem_avail": m.mem_avail,
        "busy": m.busy,
        "age_ms": max(0, now_ms() - m.at_ms),
    }


def _meta_mgmt_port(meta: bytes) -> int:
    try:
        value = msgpack.unpackb(meta, raw=False) if meta else None
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return 0
    port = value.get("m") if isinstance(value, dict) else None
    return port if isinstance(port, int) and 0 < port < 65536 else 0
