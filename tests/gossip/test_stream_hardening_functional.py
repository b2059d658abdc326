"""The gossip TCP port against strangers, on real loopback sockets (issue #12, clause 5).

A stream is refused from its length and envelope header before its body is buffered; the
first bytes have a deadline; one source address holds a bounded number of streams; and when
strangers hold every slot, a peer's join still gets in (the oldest unauthenticated stream is
evicted). No wall-clock assertions: every wait is "eventually, within a generous bound".
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fnlb.gossip import runtime as runtime_module
from fnlb.gossip.crypto import GossipCipher, Keyring
from fnlb.gossip.member import EventKind, MemberEvent
from fnlb.gossip.messages import MemberState
from fnlb.gossip.profile import GossipProfile
from fnlb.gossip.runtime import GossipRuntime
from fnlb.gossip.transport import MAX_STREAMS
from tests.support import eventually

KEY = bytes(range(32))


def runtime(name: str, join: tuple[str, ...] = ()) -> GossipRuntime:
    return GossipRuntime(
        listen="127.0.0.1:0",
        profile=GossipProfile.local(),
        keyring=Keyring([KEY]),
        join=join,
        node_name=name,
        leave_timeout=0.2,
    )


@contextlib.asynccontextmanager
async def started(*runtimes: GossipRuntime) -> AsyncIterator[None]:
    try:
        for rt in runtimes:
            await rt.start()
        yield
    finally:
        for rt in runtimes:
            await rt.stop()


def enough_file_descriptors(wanted: int) -> None:
    """Raise this process's soft limit on open files to `wanted` (or skip if it cannot)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def address(rt: GossipRuntime) -> tuple[str, int]:
    assert rt.bound is not None
    return rt.bound


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """True once the peer closed the stream without answering (within a generous bound)."""
    async with asyncio.timeout(20):
        with contextlib.suppress(ConnectionError):
            return await reader.read() == b""
    return True


async def test_a_stranger_declaring_a_huge_frame_is_refused_before_it_is_buffered() -> None:
    a = runtime("a")
    async with started(a):
        reader, writer = await asyncio.open_connection(*address(a))
        writer.write(struct.pack(">I", 20 << 20) + bytes(100))  # and then nothing: held open
        await writer.drain()
        assert await closed_by_peer(reader)
        assert a.all_drops().get("frame_too_large") == 1
        writer.close()


async def test_an_envelope_header_for_another_cluster_is_refused_before_its_body() -> None:
    a = runtime("a")
    async with started(a):
        other = GossipCipher(Keyring([KEY]), "another cluster")
        envelope = other.seal(bytes(10_000), 1_800_000_000.0)
        reader, writer = await asyncio.open_connection(*address(a))
        writer.write(struct.pack(">I", len(envelope)) + envelope[:40])  # the body never comes
        await writer.drain()
        assert await closed_by_peer(reader)
        assert a.all_drops().get("label_mismatch") == 1
        writer.close()


async def test_silence_after_connecting_is_dropped_at_the_first_byte_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime_module, "FIRST_BYTE_TIMEOUT", 0.2)
    a = runtime("a")
    async with started(a):
        reader, writer = await asyncio.open_connection(*address(a))
        assert await closed_by_peer(reader)
        assert a.all_drops().get("first_byte_timeout") == 1
        writer.close()


async def test_one_source_address_holds_a_bounded_number_of_streams() -> None:
    a = runtime("a")
    async with started(a):
        held = [
            await asyncio.open_connection(*address(a), local_addr=("127.0.0.3", 0))
            for _ in range(runtime_module.MAX_STREAMS_PER_SOURCE + 10)
        ]
        await eventually(lambda: a.all_drops().get("too_many_from_source", 0) == 10)
        for _, writer in held:
            writer.close()


async def test_a_join_gets_in_while_a_thousand_stranger_connections_hold_every_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # strangers from 100 loopback addresses, 10 each: under the per-source cap, so only the
    # eviction of unauthenticated streams can make room; they never send a byte, and the
    # first-byte deadline is pushed out so that it does not clear them first
    monkeypatch.setattr(runtime_module, "FIRST_BYTE_TIMEOUT", 600.0)
    enough_file_descriptors(3000)  # 1,000 client sockets, up to 128 served, the rest
    a = runtime("a")
    async with started(a):
        held = []
        for i in range(1000):
            source = f"127.0.0.{2 + i % 100}"
            held.append(await asyncio.open_connection(*address(a), local_addr=(source, 0)))
        await eventually(lambda: a._serving == MAX_STREAMS)
        b = runtime("b", join=(f"127.0.0.1:{address(a)[1]}",))
        async with started(b):

            def joined() -> bool:
                seen = {m.name: m.state for m in a.members()}
                return b.joined and seen.get("b") == MemberState.ALIVE

            await eventually(joined, within=30)
        assert a.all_drops().get("evicted_unauthenticated", 0) > 0
        assert a.all_drops().get("too_many_streams", 0) == 0
        for _, writer in held:
            writer.close()


async def test_once_joined_a_peer_seals_what_it_sends_to_the_other_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = runtime("a")
    async with started(a):
        b = runtime("b", join=(f"127.0.0.1:{address(a)[1]}",))
        sealed_to: list[str] = []
        seal = b.cipher.seal

        def recording(payload: bytes, now: float, *, to: str = "", reply_to: bytes = b"") -> bytes:
            sealed_to.append(to)
            return seal(payload, now, to=to, reply_to=reply_to)

        monkeypatch.setattr(b.cipher, "seal", recording)
        async with started(b):
            await eventually(lambda: sealed_to.count("a") >= 3)
            assert a.all_drops().get("not_for_us", 0) == 0
        assert set(sealed_to) <= {"", "a"}


def test_the_late_death_of_an_old_occupant_does_not_take_its_address_back() -> None:
    rt = runtime("me")
    addr = ("10.0.0.7", 7946)
    rt._publish(MemberEvent(EventKind.JOINED, "old", addr, 1, b""))
    rt._publish(MemberEvent(EventKind.JOINED, "new", addr, 1, b""))  # restarted, renamed
    rt._publish(MemberEvent(EventKind.DEAD, "old", addr, 1, b""))
    assert rt._names[addr] == "new"


def rmem_max() -> int:
    """The most receive buffer the kernel grants a socket that asks (net.core.rmem_max)."""
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


async def test_the_udp_receive_buffer_is_widened_past_the_kernel_default() -> None:
    a = runtime("a")
    async with started(a):
        assert a._udp is not None
        sock = a._udp.get_extra_info("socket")
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
            default = plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if rmem_max() <= default // 2:
            pytest.skip("the kernel allows no more than its default")
        assert granted > default
