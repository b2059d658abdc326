"""Which Kubernetes pods are Fn nodes, and at what address: the rules of `-db=k8s`.

Rule: no I/O here; a pod is the decoded JSON object the API server sent.

A pod is a node when all of these hold, read from the pod object alone:

- `status.phase` is `Running` (a Pending pod has no server yet; Succeeded/Failed ones are gone);
- its `Ready` condition is `"True"`: the pod's own readiness probe passed, so Kubernetes would
  send it Service traffic too (the original fnlb did not check this and routed to pods still
  starting their Fn server);
- `metadata.deletionTimestamp` is unset: a terminating pod stays Running and often Ready for
  its grace period, but is already draining;
- `status.podIP` is set (it is empty for a moment after scheduling).

The node address is `podIP:target-port`, with IPv6 addresses in brackets as `-nodes` takes them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any


def pod_key(pod: Mapping[str, Any]) -> str | None:
    """The pod's identity across events: `namespace/name` (None for an object with no name).

    The original keyed by self link, which newer API servers no longer send.
    """
    meta = pod.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    namespace = meta.get("namespace")
    return f"{namespace if isinstance(namespace, str) else ''}/{name}"


def is_ready(pod: Mapping[str, Any]) -> bool:
    """Running, Ready condition true, not terminating (see the module docstring)."""
    meta = pod.get("metadata")
    status = pod.get("status")
    if not isinstance(meta, Mapping) or not isinstance(status, Mapping):
        return False
    if meta.get("deletionTimestamp"):
        return False
    if status.get("phase") != "Running":
        return False
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return False
    return any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in conditions
    )


def pod_node(pod: Mapping[str, Any], target_port: int) -> str | None:
    """The node address `podIP:target_port` of a pod that is a node, else None."""
    if not is_ready(pod):
        return None
    status = pod["status"]
    ip = status.get("podIP")
    if not isinstance(ip, str) or not ip:
        return None
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return None
    host = f"[{parsed}]" if parsed.version == 6 else str(parsed)
    return f"{host}:{target_port}"
