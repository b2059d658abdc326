"""`POST /1/lb/cluster/hold`: a peer holds node-set changes only, and says when it did not."""

from __future__ import annotations

import time

import aiohttp
import msgpack

from testkit.peers import peers
from tests.support import wait_for


async def hold(client: aiohttp.ClientSession, mgmt: object, message: object) -> tuple[int, str]:
    async with client.post(
        f"http://{mgmt}/1/lb/cluster/hold",
        data=msgpack.packb(message, use_bin_type=True),
        headers={"Content-Type": "application/msgpack"},
    ) as r:
        return r.status, (await r.json())["msg"]


async def test_hold_takes_node_changes_only_and_refuses_what_it_did_not_apply() -> None:
    async with peers(1) as (b,), aiohttp.ClientSession() as client:
        assert b.cluster is not None
        now = int(time.time() * 1000)
        status, msg = await hold(client, b.mgmt_address, ["n", [["n:1", now, 0, "q", True]]])
        assert (status, msg) == (200, "held")
        assert b.peer.nodes() == ["n:1"]
        # A verdict claiming to be another peer's is not a node change: not applied.
        status, msg = await hold(client, b.mgmt_address, ["v", "q", "n:1", False, 1 << 62])
        assert status == 400
        assert "node-set change" in msg
        assert b.peer.state.verdicts.verdict("q", "n:1") is None
        # A node entry from far in the future is refused by the drift check: not "held".
        far = now + 10 * 3600 * 1000
        status, msg = await hold(client, b.mgmt_address, ["n", [["n:2", far, 0, "q", True]]])
        assert status == 409
        assert "not held" in msg
        assert b.peer.nodes() == ["n:1"]
        async with client.get(f"http://{b.mgmt_address}/1/lb/cluster") as r:
            drops = (await r.json())["drops"]
        assert drops["hlc_drift"] == 1
        assert drops["not_a_node_change"] == 1


async def test_quiet_peers_show_the_same_load_checksum() -> None:
    async with peers(3) as group, aiohttp.ClientSession() as client:
        async with client.get(f"http://{group[0].mgmt_address}/1/lb/cluster") as r:
            report = await r.json()
        assert len(report["load_checksum"]) == 8
        states = [b.peer.state for b in group if b.cluster is not None]

        def same_load() -> bool:
            now = int(time.time() * 1000)
            return len({s.load_checksum(now) for s in states}) == 1

        await wait_for(same_load, within=10)
