"""`-db=k8s`: Kubernetes owns the node list; fnlb still checks health and routes.

`KubernetesNodes` wraps the process's node directory (a lone `NodeRegistry` or a cluster
peer's `ClusterService`):

- the pod watch's changes are applied to it, so the health checker checks every pod (on top of
  the pod's own probes, as the original did) and, in a cluster, peers gossip verdicts and load
  for the same nodes;
- the view the proxy reads is the directory's view limited to the pods that are nodes now. A
  pod that turns unready or is deleted leaves this peer's routable set as soon as its watch
  event arrives, whatever gossip still carries; every peer watches, so every peer drops it;
- PUT/DELETE /1/lb/nodes answer 409 saying that Kubernetes owns the list.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fnlb.cluster.registry import Listener, NodeDirectory
from fnlb.cluster.view import NodeView
from fnlb.config import Settings
from fnlb.discovery.k8s_client import PodWatcher
from fnlb.discovery.k8s_config import ApiAccess, api_access
from fnlb.discovery.k8s_watch import NodeChange
from fnlb.errors import BadRequest
from fnlb.health.node_metrics import NodeMetrics
from fnlb.health.verdict import NodeHealth

log = logging.getLogger("fnlb.k8s")

Apply = Callable[[Iterable[str], Iterable[str]], None]
"""Add these nodes, remove those, in the wrapped directory."""


class KubernetesNodes:
    """A `NodeDirectory` whose membership follows the pod watch (module docstring)."""

    def __init__(self, inner: NodeDirectory, apply: Apply, owner: str) -> None:
        self._inner = inner
        self._apply = apply
        self._owner = owner
        self._allowed: frozenset[str] = frozenset()
        self._seen: NodeView | None = None
        self._version = 0
        self._view = NodeView(0, {})

    # -- fed by the watch ------------------------------------------------------------------

    def pods_changed(self, change: NodeChange) -> None:
        self._allowed = change.nodes
        added, removed = set(change.added), set(change.removed)
        if change.full:  # a complete list: the truth, whatever the directory held before
            held = set(self._inner.nodes())
            added |= change.nodes - held
            removed |= held - change.nodes
        if added or removed:
            log.info(
                "Kubernetes nodes changed",
                extra={"added": sorted(added), "removed": sorted(removed)},
            )
        self._apply(sorted(added), sorted(removed))
        self._refresh(self._inner.view)

    # -- NodeDirectory ---------------------------------------------------------------------

    @property
    def view(self) -> NodeView:
        inner = self._inner.view
        if inner is not self._seen:
            self._refresh(inner)
        return self._view

    def _refresh(self, inner: NodeView) -> None:
        self._seen = inner
        self._version += 1
        allowed = self._allowed
        self._view = NodeView(
            self._version, {n: s for n, s in inner.states.items() if n in allowed}
        )

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

    @property
    def node_metrics(self) -> Mapping[str, NodeMetrics]:
        return self._inner.node_metrics

    async def put(self, node: str) -> dict[str, Any]:
        raise BadRequest(self._refusal("added"), status=409)

    async def delete(self, node: str) -> dict[str, Any]:
        raise BadRequest(self._refusal("deleted"), status=409)

    def _refusal(self, what: str) -> str:
        return (
            f"nodes cannot be {what} through the API with -db=k8s: Kubernetes owns the node "
            f"list ({self._owner}); scale or relabel the Fn pods instead"
        )


class KubernetesSource:
    """The pod watcher and the directory wrapper of one fnlb process."""

    def __init__(self, settings: Settings, access: ApiAccess | None = None) -> None:
        self.access = access or api_access(settings.kubeconfig, settings.namespace, os.environ)
        self.settings = settings
        selector = settings.label_selector
        self.owner = (
            f"pods {'matching ' + selector if selector else '(all)'} "
            f"in namespace {self.access.namespace}"
        )
        self.nodes: KubernetesNodes | None = None
        self.watcher: PodWatcher | None = None

    def wrap(self, directory: NodeDirectory, apply: Apply) -> NodeDirectory:
        self.nodes = KubernetesNodes(directory, apply, self.owner)
        return self.nodes

    async def start(self) -> None:
        assert self.nodes is not None, "wrap() first"
        if not self.settings.label_selector:
            log.warning(
                "-label-selector is empty: every pod in the namespace counts as an Fn node, "
                "fnlb's own pods included; give the Fn pods' labels (e.g. app=fn,role=fn-service)",
                extra={"namespace": self.access.namespace},
            )
        self.watcher = PodWatcher(
            self.access,
            self.settings.label_selector,
            self.settings.target_port,
            self.nodes.pods_changed,
        )
        await self.watcher.start()

    async def stop(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()

    def ready(self) -> tuple[bool, str]:
        if self.watcher is None:
            return False, "the Kubernetes pod watch has not started"
        return self.watcher.ready
