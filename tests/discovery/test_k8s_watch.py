"""The watch protocol's decisions, without sockets: what to request next and what changed."""

from __future__ import annotations

from typing import Any

import pytest

from fnlb.discovery.k8s_watch import (
    ApiStatusError,
    EventLines,
    ListRequest,
    PodWatch,
    WatchRequest,
    backoff_delay,
)
from fnlb.errors import RemoteProtocolError
from testkit.k8s_pods import pod


def pod_list(rv: str, *pods: dict[str, Any], cont: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return {"kind": "PodList", "metadata": meta, "items": list(pods)}


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


def listed(*pods: dict[str, Any], rv: str = "10") -> PodWatch:
    w = PodWatch(8080)
    w.list_page(pod_list(rv, *pods))
    return w


@pytest.mark.parametrize(
    ("attempt", "rand", "delay"),
    [
        (0, 0.0, 0.25),
        (0, 0.5, 0.375),
        (1, 0.0, 0.5),
        (3, 0.0, 2.0),
        (6, 0.0, 15.0),  # 0.5 * 64 = 32, capped at 30
        (60, 0.999, 29.985),
        (10_000, 0.0, 15.0),  # no overflow however long the outage
    ],
)
def test_backoff_doubles_to_a_cap_with_equal_jitter(
    attempt: int, rand: float, delay: float
) -> None:
    assert backoff_delay(attempt, rand, base=0.5, cap=30.0) == pytest.approx(delay)


def test_backoff_rejects_a_random_number_outside_zero_one() -> None:
    with pytest.raises(ValueError, match="rand"):
        backoff_delay(0, 1.0)


def test_first_a_list_then_a_watch_from_its_resource_version() -> None:
    w = PodWatch(8080)
    assert w.next_request() == ListRequest(None)
    change = w.list_page(pod_list("7", pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready=False)))
    assert change is not None
    assert change.full
    assert change.nodes == {"10.0.0.1:8080"}
    assert w.synced
    assert w.pod_count == 2
    assert w.next_request() == WatchRequest("7")


def test_a_paged_list_replaces_the_set_only_after_the_last_page() -> None:
    w = listed(pod("old", "10.0.0.9"))
    w.resource_version = None  # as after a 410
    assert w.list_page(pod_list("", pod("a", "10.0.0.1"), cont="page2")) is None
    assert w.nodes == {"10.0.0.9:8080"}  # still routable while the relist is under way
    assert w.next_request() == ListRequest("page2")
    change = w.list_page(pod_list("20", pod("b", "10.0.0.2")))
    assert change is not None
    assert change.nodes == {"10.0.0.1:8080", "10.0.0.2:8080"}
    assert change.removed == {"10.0.0.9:8080"}
    assert w.next_request() == WatchRequest("20")


def test_events_change_one_pod_and_move_the_resource_version() -> None:
    w = listed()
    c = w.watch_event(event("ADDED", pod("a", "10.0.0.1", rv="11")))
    assert c is not None
    assert c.added == {"10.0.0.1:8080"}
    assert not c.full
    assert w.watch_event(event("MODIFIED", pod("a", "10.0.0.1", rv="12"))) is None  # no change
    c = w.watch_event(event("MODIFIED", pod("a", "10.0.0.1", ready=False, rv="13")))
    assert c is not None
    assert c.removed == {"10.0.0.1:8080"}
    assert w.watch_event(event("DELETED", pod("a", "10.0.0.1", rv="14"))) is None
    assert w.pod_count == 0
    assert w.next_request() == WatchRequest("14")


def test_a_terminating_pod_leaves_before_it_is_deleted() -> None:
    w = listed(pod("a", "10.0.0.1"))
    c = w.watch_event(event("MODIFIED", pod("a", "10.0.0.1", terminating=True, rv="11")))
    assert c is not None
    assert c.removed == {"10.0.0.1:8080"}
    assert w.nodes == frozenset()


def test_a_bookmark_moves_only_the_resource_version() -> None:
    w = listed(pod("a", "10.0.0.1"))
    bookmark = {"kind": "Pod", "metadata": {"resourceVersion": "99"}}
    assert w.watch_event(event("BOOKMARK", bookmark)) is None
    assert w.next_request() == WatchRequest("99")
    assert w.nodes == {"10.0.0.1:8080"}


def test_a_410_error_event_lists_again_and_keeps_the_nodes_meanwhile() -> None:
    w = listed(pod("a", "10.0.0.1"))
    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
    assert w.watch_event(event("ERROR", gone)) is None
    assert w.next_request() == ListRequest(None)
    assert w.nodes == {"10.0.0.1:8080"}


def test_an_http_410_lists_again_at_once() -> None:
    w = listed()
    assert w.failed(410, 0.5) == 0.0
    assert w.next_request() == ListRequest(None)


def test_an_expired_continue_token_restarts_the_list() -> None:
    w = PodWatch(8080)
    w.list_page(pod_list("", pod("a", "10.0.0.1"), cont="p2"))
    w.failed(410, 0.0)
    assert w.next_request() == ListRequest(None)
    change = w.list_page(pod_list("5", pod("b", "10.0.0.2")))
    assert change is not None
    assert change.nodes == {"10.0.0.2:8080"}


def test_other_error_events_raise_with_their_code() -> None:
    w = listed()
    with pytest.raises(ApiStatusError) as e:
        w.watch_event(event("ERROR", {"kind": "Status", "code": 500, "message": "etcd"}))
    assert e.value.code == 500


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        {"type": "ADDED"},
        {"type": "ADDED", "object": {"metadata": {"name": "a"}}},  # no resourceVersion
        {"type": "SURPRISE", "object": pod("a", "10.0.0.1")},
    ],
)
def test_garbage_events_are_remote_protocol_errors(bad: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        listed().watch_event(bad)


def test_auth_failures_are_reported_until_a_request_succeeds() -> None:
    w = PodWatch(8080)
    assert w.failed(403, 0.0, "pods is forbidden") == pytest.approx(0.25)
    assert w.auth_error is not None
    assert "403" in w.auth_error
    assert "forbidden" in w.auth_error
    assert w.failed(401, 0.0) == pytest.approx(0.5)  # the back-off keeps growing
    assert w.auth_error is not None
    assert "401" in w.auth_error
    w.list_page(pod_list("3"))
    assert w.auth_error is None
    assert w.failed(None, 0.0) == pytest.approx(0.25)  # success reset the back-off


def test_a_watch_that_ends_at_once_and_empty_backs_off() -> None:
    w = listed()
    w.watch_opened(100.0)
    assert w.watch_ended(100.1, 0.0) == pytest.approx(0.25)
    w.watch_opened(200.0)
    assert w.watch_ended(200.1, 0.0) == pytest.approx(0.25)  # a 200 reset the attempts


def test_a_watch_that_lasted_or_delivered_rewatches_at_once() -> None:
    w = listed()
    w.watch_opened(100.0)
    assert w.watch_ended(400.0, 0.0) == 0.0  # the server's timeoutSeconds
    w.watch_opened(500.0)
    w.watch_event(event("ADDED", pod("a", "10.0.0.1", rv="11")))
    assert w.watch_ended(500.1, 0.0) == 0.0


def test_event_lines_survive_any_chunking_and_drop_a_cut_line() -> None:
    lines = EventLines()
    assert lines.feed(b'{"a":') == []
    assert lines.feed(b'1}\n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert lines.pending == 4
    assert lines.feed(b":3}\n\n") == [b'{"c":3}']


def test_event_lines_bound_an_endless_line() -> None:
    lines = EventLines()
    for _ in range(16):
        lines.feed(b"x" * (1024 * 1024))
    with pytest.raises(RemoteProtocolError):
        lines.feed(b"x")
