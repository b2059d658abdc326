"""Where a process's node list comes from (`-db`), behind one small interface for the shells.

The `Peer` holds the node list whatever its source; a `NodeSource` says where it starts
(`initial_nodes`), keeps an acknowledged change where the source keeps it (`keep`, before the
API answers), may own the list outright (`owner`: the API then refuses changes), runs its own
tasks (`start`/`stop`) and says whether it is in step (`ready`, for `/readyz`).

- `-db=sqlite3://:memory:` (default): the Peer alone; nothing to keep or run.
- `-db=sqlite3:///file.db`: a lone fnlb's list is also written to that file (`sqlite_nodes`).
- `-db=k8s`: the pod watch owns the list (`k8s_nodes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fnlb.config import Settings
from fnlb.discovery.db_url import parse_db
from fnlb.errors import ConfigError
from fnlb.peer.core import NodeChange, Peer


class NodeSource(Protocol):
    owner: str
    """Who owns the node list when the management API may not change it ("" otherwise)."""

    def initial_nodes(self, given: Sequence[str]) -> list[str]:
        """The nodes a lone fnlb starts with, given `-nodes`."""
        ...

    async def keep(self, change: NodeChange) -> None:
        """Keep an acknowledged change where this source keeps the list (before the answer)."""
        ...

    async def start(self, peer: Peer) -> None: ...

    async def stop(self) -> None: ...

    def ready(self) -> tuple[bool, str]:
        """Whether the source knows the node list; why not, when it does not."""
        ...


class InMemory:
    """The default: the Peer keeps the list itself (in a cluster, with `-state-dir`)."""

    owner = ""

    def initial_nodes(self, given: Sequence[str]) -> list[str]:
        return list(given)

    async def keep(self, change: NodeChange) -> None:
        return None

    async def start(self, peer: Peer) -> None:
        return None

    async def stop(self) -> None:
        return None

    def ready(self) -> tuple[bool, str]:
        return True, ""


class SqliteFile(InMemory):
    """`-db=sqlite3:///path`: a lone fnlb's list in a SQLite file, as the original kept it."""

    def __init__(self, path: str) -> None:
        from fnlb.discovery.sqlite_nodes import NodeFile

        self.file = NodeFile(path)

    def initial_nodes(self, given: Sequence[str]) -> list[str]:
        self.file.add_now(given)  # -nodes join the kept list, as the original's did
        return self.file.addresses()

    async def keep(self, change: NodeChange) -> None:
        if change.added:
            await self.file.add(change.node)
        else:
            await self.file.remove(change.node)

    async def stop(self) -> None:
        self.file.close()


def node_source(settings: Settings) -> NodeSource:
    """The source `-db` names (ConfigError for what fnlb cannot do; see `db_url`)."""
    choice = parse_db(settings.db)
    if choice.kind == "k8s":
        from fnlb.discovery.k8s_nodes import KubernetesSource

        return KubernetesSource(settings)
    if choice.kind == "sqlite":
        if settings.cluster_mode:
            raise ConfigError(
                "-db=sqlite3:///file: a cluster peer keeps its node list with -state-dir DIR; "
                "drop -db"
            )
        return SqliteFile(choice.path)
    return InMemory()
