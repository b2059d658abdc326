"""--routing=classic reproduces the original fnlb's choices; rendezvous is the default."""

from __future__ import annotations

import random

import aiohttp
import pytest

from fnlb.routing.classic import ClassicRouter
from fnlb.routing.policy import make_policy
from tests.support import Backend, running_balancer, wait_for


async def test_classic_sends_each_path_where_the_original_would() -> None:
    backends = [Backend(f"n{i}") for i in range(4)]
    for b in backends:
        await b.start()
    try:
        addrs = [b.address for b in backends]
        async with running_balancer(nodes=",".join(addrs), routing="classic") as lb:
            await wait_for(lambda: len(lb.registry.view.routable) == 4)
            original = ClassicRouter(random.Random(0))
            async with aiohttp.ClientSession() as client:
                for i in range(40):
                    path = f"/r/app/fn{i}"
                    async with client.get(f"http://{lb.listen_address}{path}") as r:
                        node = (await r.json())["node"]
                    expected = original.pick(path, addrs)  # waits are tiny: no walk
                    assert node == next(b.name for b in backends if b.address == expected)
    finally:
        for b in backends:
            await b.stop()


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="classic"):
        make_policy("roundrobin", random.Random())
