"""`-db=sqlite3:///path`: a lone fnlb's node list kept in a SQLite file across restarts.

As in the original fnlb, nodes added with PUT /1/lb/nodes (and `-nodes`) are written to the
file and come back after a restart; DELETE removes them. The stdlib `sqlite3` module is enough:
one table of addresses, one writer. A change is committed before the API answers, so an
acknowledged change survives a crash. Health stays in memory: it is re-learnt by checking.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fnlb.cluster.registry import Listener, NodeRegistry
from fnlb.cluster.view import NodeView
from fnlb.errors import ConfigError
from fnlb.health.node_metrics import NodeMetrics
from fnlb.health.verdict import NodeHealth

_SCHEMA = "CREATE TABLE IF NOT EXISTS lb_nodes (address TEXT PRIMARY KEY NOT NULL)"


class NodeFile:
    """The SQLite file of one fnlb's node addresses."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"-db=sqlite3://{path}: cannot open the node file: {e}") from None
        self._lock = asyncio.Lock()

    def addresses(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT address FROM lb_nodes ORDER BY 1")]

    def add_now(self, nodes: Iterable[str]) -> None:
        """Insert at start, before the event loop serves anything."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO lb_nodes (address) VALUES (?)", [(n,) for n in nodes]
            )

    async def add(self, node: str) -> None:
        await self._write("INSERT OR IGNORE INTO lb_nodes (address) VALUES (?)", node)

    async def remove(self, node: str) -> None:
        await self._write("DELETE FROM lb_nodes WHERE address = ?", node)

    async def _write(self, sql: str, node: str) -> None:
        # The commit waits for the disk (synchronous=FULL): off the event loop, one at a time.
        async with self._lock:
            await asyncio.to_thread(self._db.execute, sql, (node,))

    def close(self) -> None:
        self._db.close()


class FileBackedNodes:
    """A lone fnlb's `NodeRegistry` whose membership is also written to a `NodeFile`."""

    def __init__(self, inner: NodeRegistry, file: NodeFile) -> None:
        self._inner = inner
        self._file = file
        file.add_now(inner.nodes())  # -nodes join the kept list, as the original's did
        for node in file.addresses():
            inner.add(node)

    @property
    def view(self) -> NodeView:
        return self._inner.view

    @property
    def node_metrics(self) -> Mapping[str, NodeMetrics]:
        return self._inner.node_metrics

    def nodes(self) -> list[str]:
        return self._inner.nodes()

    def health(self, node: str) -> NodeHealth | None:
        return self._inner.health(node)

    def record_check(self, node: str, ok: bool, error: str = "") -> None:
        self._inner.record_check(node, ok, error)

    def on_change(self, listener: Listener) -> None:
        self._inner.on_change(listener)

    def record_metrics(self, node: str, metrics: NodeMetrics) -> None:
        self._inner.record_metrics(node, metrics)

    async def put(self, node: str) -> dict[str, Any]:
        await self._file.add(node)  # kept first: the answer means it survives a restart
        return await self._inner.put(node)

    async def delete(self, node: str) -> dict[str, Any]:
        await self._file.remove(node)
        return await self._inner.delete(node)
