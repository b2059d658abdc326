"""The pieces of fnlb.observe without a network: histograms, trace context, outcomes, v1."""

from __future__ import annotations

import random

import pytest
from multidict import CIMultiDict

from fnlb.addresses import collector_url
from fnlb.observe.calls import RETRY
from fnlb.observe.histogram import Histogram
from fnlb.observe.outcome import outcome_for
from fnlb.observe.tracing import parse_context
from fnlb.observe.zipkin import to_v1
from fnlb.peer.core import Peer
from fnlb.routing.attempt import Attempt
from fnlb.routing.hotset_policy import HotSetPolicy
from fnlb.routing.picked import HOME, SPILL, SPREAD, FixedPick
from fnlb.routing.policies import make_policy


def test_histogram_buckets_follow_prometheus_le() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 3.0):
        h.observe(v)
    assert h.cumulative() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert h.sum == pytest.approx(4.65)
    assert h.count == 5


def test_histogram_quantile_interpolates_within_a_bucket() -> None:
    h = Histogram((1.0, 2.0))
    assert h.quantile(0.5) is None
    for _ in range(10):
        h.observe(1.5)
    assert h.quantile(0.5) == pytest.approx(1.5)
    assert h.quantile(1.0) == pytest.approx(2.0)


T, S = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"traceparent": f"00-{T}-{S}-01"}, (T, S, True, False)),
        ({"traceparent": f"00-{T}-{S}-00"}, (T, S, False, False)),
        ({"Traceparent": f"00-{T.upper()}-{S}-03"}, (T, S, True, False)),
        ({"traceparent": f"ff-{T}-{S}-01"}, None),  # version ff is invalid
        ({"traceparent": f"00-{'0' * 32}-{S}-01"}, None),
        ({"traceparent": "junk"}, None),
        ({"b3": f"{T}-{S}-1"}, (T, S, True, True)),
        ({"b3": f"{T}-{S}"}, (T, S, None, True)),
        ({"b3": "0"}, ("", "", False, True)),
        ({"b3": f"{T}-nothex"}, None),
        ({"X-B3-TraceId": T[16:], "X-B3-SpanId": S}, ("0" * 16 + T[16:], S, None, True)),
        ({"X-B3-TraceId": T, "X-B3-SpanId": S, "X-B3-Sampled": "0"}, (T, S, False, True)),
        ({"X-B3-Flags": "1"}, ("", "", True, True)),
        ({}, None),
    ],
)
def test_trace_context_from_w3c_and_b3_headers(
    headers: dict[str, str], expected: tuple[str, str, bool | None, bool] | None
) -> None:
    ctx = parse_context(CIMultiDict(headers))
    got = None if ctx is None else (ctx.trace_id, ctx.parent_id, ctx.sampled, ctx.b3)
    assert got == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://zipkin:9411/api/v1/spans", ("http://zipkin:9411/api/v1/spans", 1)),
        ("http://zipkin:9411/api/v2/spans", ("http://zipkin:9411/api/v2/spans", 2)),
        ("http://zipkin:9411", ("http://zipkin:9411/api/v2/spans", 2)),
        ("https://z.example/", ("https://z.example/api/v2/spans", 2)),
    ],
)
def test_collector_url_picks_the_api_version(url: str, expected: tuple[str, int]) -> None:
    assert collector_url(url) == expected


@pytest.mark.parametrize(
    "url", ["zipkin:9411", "ftp://z/api/v2/spans", "http://:9411", "http://z:x"]
)
def test_collector_url_refuses_what_cannot_work(url: str) -> None:
    with pytest.raises(ValueError, match=r"URL|port"):
        collector_url(url)


def test_v1_span_keeps_ids_tags_and_kind() -> None:
    span = {
        "traceId": T,
        "id": S,
        "parentId": "1" * 16,
        "name": "attempt",
        "kind": "CLIENT",
        "timestamp": 10,
        "duration": 5,
        "localEndpoint": {"serviceName": "fnlb"},
        "remoteEndpoint": {"ipv4": "127.0.0.1", "port": 8080},
        "tags": {"fnlb.node": "127.0.0.1:8080"},
    }
    v1 = to_v1(span)
    assert (v1["traceId"], v1["id"], v1["parentId"]) == (T, S, "1" * 16)
    assert [(a["value"], a["timestamp"]) for a in v1["annotations"]] == [("cs", 10), ("cr", 15)]
    assert {"key": "fnlb.node", "value": "127.0.0.1:8080", "endpoint": {"serviceName": "fnlb"}} in (
        v1["binaryAnnotations"]
    )
    assert v1["binaryAnnotations"][-1]["key"] == "sa"


NODES = [f"10.0.0.{i}:8080" for i in range(1, 6)]


def lone_peer(routing: str) -> Peer:
    """A lone Peer routing by `routing` over NODES, all online."""
    p = Peer(
        "self",
        routing=make_policy(routing, random.Random(1), lambda: 0.0),
        clock_ms=lambda: 0,
        healthy=1,
        unhealthy=1,
        gossip=False,
        seed=NODES,
    )
    for n in NODES:
        p.health_checked(n, True, 0)
    return p


def test_hotset_router_reports_home_spread_and_spill_when_it_picks() -> None:
    reg = lone_peer("hotset")
    picks = outcome_for(reg)
    policy = reg.routing
    assert isinstance(policy, HotSetPolicy)
    router = policy.router
    order = reg.view.candidates("app/f")

    def first() -> str:
        return reg.candidates("app/f", "/r/app/f")[0]

    assert first() == order[0]
    assert picks.picked == HOME
    router.update(peers_in_flight={order[0]: 30})  # width 1, its home over the cap
    assert first() not in order[:1]
    assert picks.picked == SPILL  # beyond the hot set
    # a placed home and a hot set of three: the home and order[0] over the cap
    router.update(widths={"app/f": 3}, homes={"app/f": order[2]},
                  peers_in_flight={order[2]: 30, order[0]: 30})  # fmt: skip
    assert first() == order[1]
    assert picks.picked == SPREAD
    router.update(peers_in_flight={order[2]: 30, order[0]: 30, order[1]: 30})
    assert first() in order[3:]
    assert picks.picked == SPILL
    router.update(peers_in_flight={})
    assert picks is router  # read right after each pick: a later pick overwrites it
    chosen = first()  # p2c may toss a coin between light nodes: judge the pick it reported
    assert chosen in order[:3]
    assert picks.picked == (HOME if chosen == order[2] else SPREAD)


def test_rendezvous_and_classic_report_their_picks() -> None:
    reg = lone_peer("rendezvous")
    assert outcome_for(reg).picked == HOME  # the rendezvous first: always the home
    reg = lone_peer("classic")
    policy = reg.routing
    picks = outcome_for(reg)
    home = policy.candidates(reg.view, "app/f", "/r/app/f")[0]  # no waits known: the home
    assert picks.picked == HOME
    slow = Attempt("app/f", home, "/r/app/f", 200, 0.0, 30.0)  # a 30 s wait: the walk moves on
    for _ in range(5):
        policy.observe(slow)
    seen = set()
    for _ in range(20):
        first = policy.candidates(reg.view, "app/f", "/r/app/f")[0]
        assert picks.picked == (HOME if first == home else SPILL)
        seen.add(picks.picked)
    assert SPILL in seen


def test_observer_counts_a_retry_whatever_was_picked() -> None:
    from aiohttp.test_utils import make_mocked_request

    from fnlb.observe.calls import CallObserver

    obs = CallObserver(FixedPick(SPREAD))
    request = make_mocked_request("GET", "/r/a/f")
    done = Attempt("r/a/f", "a:1", "/r/a/f", 200, 0.003, None, None, 0.001, 0.001)
    obs.end(None, request, "r/a/f", SPREAD, done, 1, 200, 0.0, 0.0)  # the second attempt
    obs.end(None, request, "r/a/f", SPILL, done, 0, 404, 0.0, 0.0)
    obs.end(None, request, "r/a/f", HOME, done, 0, 1000, 0.0, 0.0)  # no such class: 5xx
    assert obs.nodes["a:1"].calls[1 * 5 + RETRY] == 1
    assert obs.nodes["a:1"].calls[3 * 5 + SPILL] == 1
    assert obs.nodes["a:1"].calls[4 * 5 + HOME] == 1
    assert sum(obs.nodes["a:1"].calls) == 3
    # histogram buckets: the two lowest bounds are compared first, the rest bisected
    for took in (0.0005, 0.0007, 0.001, 0.002, 45.0, 100.0):
        late = Attempt("r/a/f", "b:1", "/r/a/f", 200, took, None, None, took, took)
        obs.end(None, request, "r/a/f", HOME, late, 0, 200, 0.0, 0.0)
    reference = Histogram()
    for took in (0.0005, 0.0007, 0.001, 0.002, 45.0, 100.0):
        reference.observe(took)
    assert obs.nodes["b:1"].duration.counts == reference.counts
    assert obs.nodes["b:1"].first_byte.counts == reference.counts


def test_observer_counts_and_drops_nodes_that_left() -> None:
    from aiohttp.test_utils import make_mocked_request

    from fnlb.observe.calls import CallObserver

    obs = CallObserver(FixedPick(SPREAD))
    request = make_mocked_request("GET", "/r/a/f")
    for node in ("a:1", "b:1"):
        done = Attempt("r/a/f", node, "/r/a/f", 200, 0.003, 0.002, None, 0.001, 0.001)
        obs.end(None, request, "r/a/f", SPREAD, done, 0, 200, 0.0, 0.0)
    obs.end(None, request, "r/a/f", SPREAD, None, 0, 503, 0.0, 0.0, "no_node")
    busy = Attempt("r/a/f", "a:1", "/r/a/f", 503, 0.001, None, 15.0)
    obs.attempt(None, busy, "busy", 0.0, True)
    assert obs.nodes["a:1"].calls[1 * 5 + SPREAD] == 1  # 2xx, spread
    assert obs.nodes["none"].calls[4 * 5 + 4] == 1  # no node: 5xx, outcome none
    assert obs.errors["no_node"] == 1
    assert obs.nodes["a:1"].retries == [0, 1, 0]
    # the figures come from the attempt record: its answer time and wait, parsed once
    assert obs.nodes["a:1"].first_byte.count == 1
    assert obs.nodes["a:1"].first_byte.sum == pytest.approx(0.001)
    assert obs.nodes["a:1"].wait.sum == pytest.approx(0.002)
    assert obs.nodes["a:1"].duration.sum == pytest.approx(0.003)
    obs.retain({"a:1"})  # b:1 left while a call to it was in flight
    assert set(obs.nodes) == {"a:1", "none"}
    obs.forget("a:1")
    assert set(obs.nodes) == {"none"}


def test_call_totals_add_workers_figures_and_keep_a_dead_workers() -> None:
    from aiohttp.test_utils import make_mocked_request

    from fnlb.observe.calls import CallObserver, CallTotals

    def served(calls: int, node: str = "a:1") -> CallObserver:
        obs = CallObserver(FixedPick(HOME))
        request = make_mocked_request("GET", "/r/a/f")
        for _ in range(calls):
            done = Attempt("r/a/f", node, "/r/a/f", 200, 0.003, None, None, 0.001, 0.001)
            obs.end(None, request, "r/a/f", HOME, done, 0, 200, 0.0, 0.0)
        return obs

    totals = CallTotals(served(1))
    assert totals.merged({"a:1"}) is totals.own  # no worker: nothing to add up
    totals.report(0, served(2).snapshot(), {"sent": 4})
    totals.report(1, served(3).snapshot())
    merged = totals.merged({"a:1"})
    assert merged.nodes["a:1"].calls[1 * 5 + HOME] == 6
    assert merged.nodes["a:1"].duration.count == 6
    assert merged.nodes["a:1"].first_byte.sum == pytest.approx(0.006)
    totals.retire(0)  # worker 0 died: its figures stay, its successor counts from zero
    totals.report(0, served(1).snapshot(), {"sent": 1})
    assert totals.merged({"a:1"}).nodes["a:1"].calls[1 * 5 + HOME] == 7
    assert totals.worker_spans("sent") == 5
    assert "a:1" not in totals.merged({"b:1"}).nodes  # a deleted node's series end
    with pytest.raises(ValueError, match="not a call snapshot"):
        totals.report(2, [{"a:1": [[1, 2]]}, {}])
    assert 2 not in totals.reported


def test_workers_held_calls_add_up_at_the_primary() -> None:
    """Wait for warm's counts (-warm-wait) travel in a worker's snapshot like its calls."""
    from fnlb.observe.calls import CallObserver, CallTotals

    own = CallObserver(FixedPick(HOME))
    own.held("released", 0.02)
    worker = CallObserver(FixedPick(HOME))
    worker.held("released", 0.01)
    worker.held("expired", 0.3)
    worker.nodes["a:1"] = own._new_node("a:1")  # a worker with holds has served calls
    totals = CallTotals(own)
    totals.report(0, worker.snapshot())
    merged = totals.merged({"a:1"})
    assert merged.holds == {"released": 2, "expired": 1, "gone": 0, "drained": 0}
    assert merged.hold_s == pytest.approx(0.33)
    totals.report(1, [{}, {}])  # a snapshot without holds (an older worker's) still adds up
    assert totals.merged({"a:1"}).holds["released"] == 2
