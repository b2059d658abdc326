"""`-db=k8s`: Kubernetes owns the node list; fnlb still checks health and routes.

`KubernetesSource` feeds the pod watch's changes to the `Peer` (`Peer.follow_nodes`):

- the nodes are added and removed in the Peer's set, so the health checker checks every pod
  (on top of the pod's own probes, as the original did) and, in a cluster, peers gossip
  verdicts and load for the same nodes;
- routing sees only the pods that are nodes now. A pod that turns unready or is deleted
  leaves this peer's routable set as soon as its watch event arrives, whatever gossip still
  carries; every peer watches, so every peer drops it;
- PUT/DELETE /1/lb/nodes answer 409 saying that Kubernetes owns the list (`owner`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

from fnlb.config import Settings
from fnlb.discovery.k8s_client import PodWatcher
from fnlb.discovery.k8s_config import ApiAccess, api_access
from fnlb.discovery.k8s_watch import NodeChange
from fnlb.peer.core import NodeChange as NodeListChange
from fnlb.peer.core import Peer

log = logging.getLogger("fnlb.k8s")


def apply_pod_change(peer: Peer, change: NodeChange, now_ms: int) -> None:
    """One list or watch event's effect on the Peer (the module docstring)."""
    added, removed = set(change.added), set(change.removed)
    if change.full:  # a complete list: the truth, whatever the set held before
        held = set(peer.nodes())
        added |= change.nodes - held
        removed |= held - change.nodes
    if added or removed:
        log.info(
            "Kubernetes nodes changed",
            extra={"added": sorted(added), "removed": sorted(removed)},
        )
    peer.follow_nodes(sorted(added), sorted(removed), change.nodes, now_ms)


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
        self.watcher: PodWatcher | None = None

    def initial_nodes(self, given: Sequence[str]) -> list[str]:
        return []  # -nodes is refused with -db=k8s; the pod list comes with the watch

    async def keep(self, change: NodeListChange) -> None:
        return None  # never called: the API refuses changes (owner)

    async def start(self, peer: Peer) -> None:
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
            lambda change: apply_pod_change(peer, change, int(time.time() * 1000)),
        )
        await self.watcher.start()

    async def stop(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()

    def ready(self) -> tuple[bool, str]:
        if self.watcher is None:
            return False, "the Kubernetes pod watch has not started"
        return self.watcher.ready
