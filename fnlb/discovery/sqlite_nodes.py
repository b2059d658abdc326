"""`-db=sqlite3:///path`: a lone fnlb's node list kept in a SQLite file across restarts.

As in the original fnlb, nodes added with PUT /1/lb/nodes (and `-nodes`) are written to the
file and come back after a restart; DELETE removes them. The stdlib `sqlite3` module is enough:
one table of addresses, one writer. A change is committed before the API answers, so an
acknowledged change survives a crash. Health stays in memory: it is re-learnt by checking.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from fnlb.errors import ConfigError

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
