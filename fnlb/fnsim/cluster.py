"""Start several emulated Fn nodes in this process, for tests, demos and benchmarks.

cluster = await start_nodes(3, options=FnSimOptions(cold_start_ms=5))
... cluster.addresses -> ["127.0.0.1:40001", ...]
await cluster.stop(1)     # node 1 goes away (graceful: see FnSimOptions.shutdown_timeout_s)
await cluster.start(1)    # back on the same port, with no hot containers
await cluster.close()
"""

from __future__ import annotations

from types import TracebackType

from fnlb.fnsim.options import FnSimOptions
from fnlb.fnsim.server import FnSimNode


class FnSimCluster:
    """Emulated Fn nodes started together; `nodes[i]` has its model and stats."""

    def __init__(self, nodes: list[FnSimNode]) -> None:
        self.nodes = nodes

    @property
    def addresses(self) -> list[str]:
        """Each node's `host:port`, in index order (also while a node is stopped)."""
        return [node.address for node in self.nodes]

    async def stop(self, index: int) -> None:
        """Stop node `index`: its port closes; calls in flight finish or are cut."""
        await self.nodes[index].stop()

    async def start(self, index: int) -> None:
        """Start node `index` again on the same port, with a fresh container pool."""
        await self.nodes[index].start()

    async def close(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            await node.stop()

    async def __aenter__(self) -> FnSimCluster:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_nodes(
    count: int = 1,
    host: str = "127.0.0.1",
    port: int = 0,
    options: FnSimOptions | None = None,
) -> FnSimCluster:
    """Start `count` emulated Fn nodes on `host`: free ports if `port` is 0, else consecutive.

    Raises ValueError for bad options or count, OSError when a port cannot be bound (the
    nodes already started are stopped again).
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    if port and port + count - 1 > 65535:
        raise ValueError(f"ports {port}..{port + count - 1} do not all exist")
    opts = options if options is not None else FnSimOptions()
    opts.check()
    nodes: list[FnSimNode] = []
    try:
        for i in range(count):
            node = FnSimNode(opts, host, port + i if port else 0, index=i)
            await node.start()
            nodes.append(node)
    except BaseException:
        for node in nodes:
            await node.stop()
        raise
    return FnSimCluster(nodes)
