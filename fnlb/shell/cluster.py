"""Cluster mode's asyncio shell: gossip, the state dir and write acks around the `Peer`.

The `Peer` (fnlb.peer.core) decides; `ClusterService` only moves inputs in and outputs out:

- gossip: the runtime is given the Peer itself as its delegate; membership events become
  `members_changed`/`member_left`;
- the management API: a `NodeChange` made by the Peer is kept here. **Acknowledged means
  kept**: `keep` returns only after the change is fsync'd in `-state-dir` (when given) and
  held by `-write-acks` other live peers (each of which fsyncs it before answering), tried in
  turn over their management ports; with a gossip key, each request is sealed to the peer
  asked and its answer sealed back (fnlb.cluster.hold_seal). It says how many peers hold it
  (ourselves included). When fewer peers could take it than asked (too few alive, as in a
  minority partition, or too few answered), it raises `NotHeld` (503): the change is kept
  here and spreads by gossip, and retrying is harmless. Only `-write-acks-degraded` settles
  for the live peers there are, and then `held_by` says how many hold it;
- persistence: the node set, the clock and the peers we knew, saved when the Peer says so.

Restart: the state file gives back the node set, the clock and the peers we knew, which are
joined again along with `-join`. `-nodes` seeds the set only on a start without saved state:
afterwards the saved set is the truth, so a restart cannot resurrect a node that was deleted
while it ran. Seeded entries carry the lowest stamp there is (`NodeSet.seed`), so they lose
to every add and delete the cluster holds and to its collection floor: a stale `-nodes` adds
nothing the cluster deleted, even after the tombstone was collected. A fresh peer that has
peers to join seeds once it holds the cluster's set (`Peer.seed_nodes`): when no join target
answers the first attempt (the whole cluster starting at once), or there is nothing to join,
it seeds at once; after SEED_WAIT_S without a full state, too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import socket
import ssl
import time
from dataclasses import dataclass

import aiohttp
import msgpack

from fnlb.cluster import hold_seal
from fnlb.cluster.hlc import HybridClock, Timestamp
from fnlb.cluster.nodeset import NodeSet
from fnlb.config import DEFAULT_GOSSIP_PORT, Settings, node_list, parse_listen
from fnlb.errors import ConfigError, FnlbError
from fnlb.gossip.delegate import GossipDelegate
from fnlb.gossip.keyring_file import keyring_from_settings
from fnlb.gossip.member import EventKind, MemberEvent, MemberInfo
from fnlb.gossip.messages import MemberState
from fnlb.gossip.runtime import PROFILES, GossipRuntime
from fnlb.peer.core import NodeChange, Peer
from fnlb.shell.persist import StateDir

log = logging.getLogger("fnlb.cluster")

ACK_TIMEOUT_S = 2.0
SEED_WAIT_S = 15.0
"""A fresh peer that joined but never got a peer's full state seeds `-nodes` after this."""
HOUSEKEEPING_S = 1.0
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


def gossip_runtime(
    settings: Settings, delegate: GossipDelegate | None = None, meta: bytes = b""
) -> GossipRuntime:
    """The runtime `fnlb serve` runs in cluster mode; ConfigError for unusable settings."""
    s = settings
    keyring = keyring_from_settings(s.gossip_key, s.gossip_keyring_file, insecure=s.gossip_insecure)
    try:
        profile = PROFILES[s.gossip_profile]()
    except KeyError:
        raise ConfigError(f"-gossip-profile: {s.gossip_profile!r} is not known") from None
    return GossipRuntime(
        listen=s.gossip_listen or f":{DEFAULT_GOSSIP_PORT}",
        profile=profile,
        keyring=keyring,
        join=s.join,
        advertise=s.advertise,
        node_name=s.node_name,
        cluster_name=s.cluster_name,
        keyring_file=s.gossip_keyring_file,
        delegate=delegate,
        meta=meta,
    )


class NotHeld(FnlbError):
    """A change is kept here, but fewer live peers than `-write-acks` confirmed holding it."""

    def __init__(self, confirmed: int, wanted: int, live: int) -> None:
        super().__init__(f"{confirmed} of {wanted} peers confirmed ({live} live)")
        self.confirmed = confirmed
        self.wanted = wanted
        self.live = live


@dataclass(frozen=True, slots=True)
class Restored:
    """What a peer starts from: its saved node set (None: none saved), the `-nodes` still to
    seed (None: a saved set is the truth), and the peers it knew."""

    nodeset: NodeSet | None
    seed: list[str] | None
    known_peers: list[str]
    state_dir: StateDir | None


def restore(settings: Settings, name: str) -> Restored:
    """Read `-state-dir` (ConfigError for an unreadable one)."""
    state_dir = StateDir(settings.state_dir) if settings.state_dir else None
    saved = None
    if state_dir is not None:
        state_dir.ensure()
        saved = state_dir.load()
    if saved is None:
        return Restored(None, node_list(settings.nodes), [], state_dir)
    clock = HybridClock(name)
    last = saved.get("clock")
    if isinstance(last, list):
        clock.witness(Timestamp.from_wire(last))
    nodeset = NodeSet.from_snapshot(saved.get("nodes"), clock)
    known = [p for p in saved.get("peers", []) if isinstance(p, str)]
    return Restored(nodeset, None, known, state_dir)


class ClusterService:
    """The gossip runtime, the state dir and write acks of one `Peer`."""

    def __init__(self, settings: Settings, peer: Peer, restored: Restored) -> None:
        self.settings = settings
        self.peer = peer
        self.name = peer.name
        self.state_dir = restored.state_dir
        self.known_peers = restored.known_peers
        self._save_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.runtime: GossipRuntime | None = None
        self._peers_moved = False
        self._hold_tls: ssl.SSLContext | bool = True
        self.write_acks: dict[str, int] = {"not_needed": 0, "held": 0, "short": 0}
        """Node-list changes by how `-write-acks` went (read by /metrics)."""

    # -- keeping a change ----------------------------------------------------------------

    async def keep(self, change: NodeChange) -> int:
        """Persist, then have `write_acks` live peers hold `change`; how many hold it (this
        peer included). NotHeld when fewer peers confirmed than were asked for."""
        await self.save()
        wanted = self.settings.write_acks
        if self.settings.write_acks_degraded:
            wanted = min(wanted, len(self._live_members()))
        if wanted == 0:
            self.write_acks["not_needed"] += 1
            return 1
        payload = change.hold
        held = 1
        for name, address, tls in self._peer_mgmt_addresses():
            if held - 1 >= wanted:
                break
            if await self._ask_to_hold(address, payload, name, tls):
                held += 1
        self.write_acks["held" if held - 1 >= wanted else "short"] += 1
        if held - 1 < wanted:
            raise NotHeld(held - 1, wanted, len(self._live_members()))
        return held

    async def _ask_to_hold(self, address: str, payload: bytes, name: str, tls: bool) -> bool:
        """Ask peer `name` at `address` to hold a change; True once it proved it did.

        With a gossip key the request is sealed to that peer and its "held" must be sealed
        back to this request (fnlb.cluster.hold_seal); without one, a 200 is taken as is.
        A peer whose management port speaks TLS (`tls`, from its gossip meta) is asked over
        https; its certificate is not checked, since the seal both ways is what proves who
        holds the change (`hold_tls`).
        """
        assert self._session is not None
        assert self.runtime is not None
        cipher = self.runtime.cipher
        body, nonce = hold_seal.seal_request(cipher, payload, time.time(), name)
        kind = hold_seal.CONTENT_TYPE_SEALED if nonce else hold_seal.CONTENT_TYPE_PLAIN
        try:
            async with self._session.post(
                f"{'https' if tls else 'http'}://{address}/1/lb/cluster/hold",
                data=body,
                headers={"Content-Type": kind},
                timeout=aiohttp.ClientTimeout(total=ACK_TIMEOUT_S),
                ssl=self._hold_tls if tls else True,
            ) as resp:
                answer = await resp.read()
                if resp.status != 200:
                    log.warning(
                        "peer refused to hold a change",
                        extra={"peer": address, "status": resp.status},
                    )
                    return False
            if not hold_seal.answer_holds(cipher, _json_field(answer, "seal"), nonce, time.time()):
                log.warning("a hold answer was not sealed by that peer", extra={"peer": address})
                return False
            return True
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("peer did not hold a change", extra={"peer": address, "error": str(e)})
            return False

    async def save(self) -> None:
        """Write the node set, clock and known peers to the state dir (no-op without one)."""
        if self.state_dir is None:
            return
        async with self._save_lock:
            snapshot = {**self.peer.snapshot(), "peers": self._peer_gossip_addresses()}
            await asyncio.to_thread(self.state_dir.save, snapshot)

    # -- gossip side ---------------------------------------------------------------------

    def _on_member(self, event: MemberEvent) -> None:
        if event.kind in (EventKind.DEAD, EventKind.LEFT):
            self.peer.member_left(event.name, time.time())
        elif event.kind in (EventKind.JOINED, EventKind.UPDATED) and self.state_dir is not None:
            self._peers_moved = True  # save the peers we know: a restart rejoins them
        self._refresh_alive()

    def _refresh_alive(self) -> None:
        if self.runtime is None:
            return
        self.peer.members_changed(m.name for m in self.runtime.members() if m.state in _LIVE)

    def _live_members(self) -> list[MemberInfo]:
        if self.runtime is None:
            return []
        return [m for m in self.runtime.members() if m.state in _LIVE and m.name != self.name]

    def _peer_mgmt_addresses(self) -> list[tuple[str, str, bool]]:
        """(member name, management host:port, speaks TLS) of each live peer that published
        its management port."""
        out = []
        for m in self._live_members():
            port, tls = _meta_mgmt(m.meta)
            if port:
                out.append((m.name, f"{m.addr[0]}:{port}", tls))
        return out

    def _peer_gossip_addresses(self) -> list[str]:
        return sorted({f"{m.addr[0]}:{m.addr[1]}" for m in self._live_members()})

    def request_push_pull(self) -> None:
        """A push-pull with a random live peer now, out of turn (`Peer.take_push_pull`)."""
        if self.runtime is not None and self.runtime.started:
            self.runtime.request_push_pull()

    def members(self) -> list[MemberInfo]:
        """Every member gossip knows of, this peer included, by name."""
        if self.runtime is None:
            return []
        return sorted(self.runtime.members(), key=lambda m: m.name)

    async def start(self, mgmt_port: int, mgmt_tls: bool = False) -> None:
        """Join the cluster; `mgmt_port` is where peers reach our management API, over TLS
        when `mgmt_tls` (published in our gossip meta, so peers ask us to hold over https)."""
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        self._hold_tls = hold_tls(self.settings)
        settings = dataclasses.replace(
            self.settings,
            node_name=self.name,
            join=tuple(dict.fromkeys((*self.settings.join, *self.known_peers))),
        )
        meta = msgpack.packb({"m": mgmt_port, "t": mgmt_tls}, use_bin_type=True)
        self.runtime = gossip_runtime(settings, delegate=self.peer, meta=meta)
        self.runtime.add_listener(self._on_member)
        await self.runtime.start()
        self._refresh_alive()
        loop = asyncio.get_running_loop()
        if not self.peer.seeded:
            opened = self.runtime.member.stats.get("streams_join", 0)
            if opened == 0:  # nothing to join (we are the cluster) or no target resolved
                self.peer.seed_nodes(now_ms())
            else:
                self._tasks.append(loop.create_task(self._seed_when_joined(opened)))
        self._tasks.append(loop.create_task(self._housekeeping()))
        if self.state_dir is not None:
            await self.save()

    async def _seed_when_joined(self, opened: int) -> None:
        """Seed `-nodes` if no join target answered the first attempt (a retry opened new
        join streams) or no full state came within SEED_WAIT_S; an answer seeds it sooner."""
        assert self.runtime is not None
        deadline = time.monotonic() + SEED_WAIT_S
        while not self.peer.seeded and time.monotonic() < deadline:
            if self.runtime.member.stats.get("streams_join", 0) > opened:
                break
            await asyncio.sleep(0.1)
        self.peer.seed_nodes(now_ms())

    async def _housekeeping(self) -> None:
        """Refresh who is alive; persist the peers we know when they changed."""
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            self._refresh_alive()
            if self._peers_moved:
                self._peers_moved = False
                await self.save()

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


def _json_field(body: bytes, field: str) -> object:
    """`field` of a JSON object answer, or None when the answer is not one."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value.get(field) if isinstance(value, dict) else None


def _meta_mgmt(meta: bytes) -> tuple[int, bool]:
    """A peer's management port (0: none published) and whether it speaks TLS; peers that
    predate the TLS flag publish only the port."""
    try:
        value = msgpack.unpackb(meta, raw=False) if meta else None
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return 0, False
    if not isinstance(value, dict):
        return 0, False
    port = value.get("m")
    port = port if isinstance(port, int) and 0 < port < 65536 else 0
    return port, value.get("t") is True


def hold_tls(settings: Settings) -> ssl.SSLContext:
    """The TLS a peer's hold request uses towards a peer whose management port speaks TLS.

    The server's certificate is not checked: the hold is sealed to that peer with the gossip
    keyring and its answer sealed back, which proves more than a certificate would. When
    management requires client certificates (-mgmt-tls-client-ca), this peer presents its
    own management certificate, so the peers' certificates must come from that CA."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if settings.mgmt_tls_client_ca and settings.mgmt_tls_cert:
        ctx.load_cert_chain(settings.mgmt_tls_cert, settings.mgmt_tls_key)
    return ctx
