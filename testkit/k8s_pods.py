"""Pod objects as the Kubernetes API server sends them, for tests and the test API server."""

from __future__ import annotations

from typing import Any

IPS = [f"127.0.0.{i}" for i in range(2, 7)]
"""Pod IPs on loopback, where `fn_pods` (apiserver.py) serves Fn-like health checks."""


def pod(
    name: str,
    ip: str = "",
    *,
    phase: str = "Running",
    ready: bool = True,
    terminating: bool = False,
    labels: dict[str, str] | None = None,
    namespace: str = "fn",
    rv: str = "1",
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "resourceVersion": rv,
        "labels": dict(labels if labels is not None else {"app": "fn"}),
    }
    if terminating:
        meta["deletionTimestamp"] = "2026-12-06T12:00:00Z"
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False"},
        ],
    }
    if ip:
        status["podIP"] = ip
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": {}, "status": status}
