from __future__ import annotations

from typing import Any

import pytest

from fnlb.discovery.k8s_pods import pod_key, pod_node
from testkit.k8s_pods import pod


@pytest.mark.parametrize(
    ("obj", "node"),
    [
        (pod("a", "10.0.0.1"), "10.0.0.1:8080"),
        (pod("a", "fd00::1"), "[fd00::1]:8080"),
        (pod("a", ""), None),  # scheduled, no IP yet
        (pod("a", "10.0.0.1", phase="Pending"), None),
        (pod("a", "10.0.0.1", phase="Succeeded"), None),
        (pod("a", "10.0.0.1", ready=False), None),  # its readiness probe fails
        (pod("a", "10.0.0.1", terminating=True), None),  # still Running and Ready
        (pod("a", "not-an-ip"), None),
        ({"metadata": {"name": "a"}}, None),
        ({"metadata": {"name": "a"}, "status": {"phase": "Running", "podIP": "10.0.0.1"}}, None),
    ],
)
def test_only_running_ready_live_pods_with_an_ip_are_nodes(obj: Any, node: str | None) -> None:
    assert pod_node(obj, 8080) == node


def test_the_node_port_is_the_target_port() -> None:
    assert pod_node(pod("a", "10.0.0.1"), 9000) == "10.0.0.1:9000"


def test_pods_are_keyed_by_namespace_and_name() -> None:
    assert pod_key(pod("a", namespace="fn")) == "fn/a"
    assert pod_key({"metadata": {}}) is None
    assert pod_key({}) is None
