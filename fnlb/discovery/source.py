"""Where a process's node list comes from (`-db`), behind one small interface for the server.

The server builds its node directory as before (a lone `NodeRegistry` or a cluster peer's
`ClusterService`) and hands it to `NodeSource.wrap`, which returns the directory the rest of
the process uses; `start`/`stop` run the source's own tasks and `ready` feeds `/readyz`.

- `-db=sqlite3://:memory:` (default): the directory itself; nothing to run.
- `-db=sqlite3:///file.db`: a lone fnlb's list is also written to that file (`sqlite_nodes`).
- `-db=k8s`: the pod watch owns the list (`k8s_nodes`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from fnlb.cluster.registry import NodeDirectory, NodeRegistry
from fnlb.config import Settings
from fnlb.discovery.db_url import parse_db
from fnlb.errors import ConfigError


class NodeSource(Protocol):
    def wrap(self, directory: NodeDirectory) -> NodeDirectory: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def ready(self) -> tuple[bool, str]:
        """Whether the source knows the node list; why not, when it does not."""
        ...


class InMemory:
    """The default: the directory keeps the list itself."""

    def wrap(self, directory: NodeDirectory) -> NodeDirectory:
        return directory

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def ready(self) -> tuple[bool, str]:
        return True, ""


class SqliteFile(InMemory):
    def __init__(self, path: str) -> None:
        from fnlb.discovery.sqlite_nodes import NodeFile

        self.file = NodeFile(path)

    def wrap(self, directory: NodeDirectory) -> NodeDirectory:
        from fnlb.discovery.sqlite_nodes import FileBackedNodes

        if not isinstance(directory, NodeRegistry):
            raise ConfigError("-db=sqlite3:///file: a cluster peer keeps its list in -state-dir")
        return FileBackedNodes(directory, self.file)

    async def stop(self) -> None:
        self.file.close()


class Kubernetes:
    def __init__(self, settings: Settings) -> None:
        from fnlb.discovery.k8s_nodes import KubernetesSource

        self.source = KubernetesSource(settings)

    def wrap(self, directory: NodeDirectory) -> NodeDirectory:
        if isinstance(directory, NodeRegistry):
            registry = directory

            def apply(added: Iterable[str], removed: Iterable[str]) -> None:
                for node in added:
                    registry.add(node)
                for node in removed:
                    registry.remove(node)

            return self.source.wrap(directory, apply)
        follow = getattr(directory, "follow_source", None)
        if follow is None:
            raise ConfigError("-db=k8s: this node directory cannot follow Kubernetes")
        return self.source.wrap(directory, follow)

    async def start(self) -> None:
        await self.source.start()

    async def stop(self) -> None:
        await self.source.stop()

    def ready(self) -> tuple[bool, str]:
        return self.source.ready()


def node_source(settings: Settings) -> NodeSource:
    """The source `-db` names (ConfigError for what fnlb cannot do; see `db_url`)."""
    choice = parse_db(settings.db)
    if choice.kind == "k8s":
        return Kubernetes(settings)
    if choice.kind == "sqlite":
        if settings.cluster_mode:
            raise ConfigError(
                "-db=sqlite3:///file: a cluster peer keeps its node list with -state-dir DIR; "
                "drop -db"
            )
        return SqliteFile(choice.path)
    return InMemory()
