"""The original fnlb's routing: hash, jump, wait averages, accept rules, Go durations."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from fnlb.errors import RemoteProtocolError
from fnlb.goduration import parse_go_duration_ns
from fnlb.routing.classic import (
    ClassicRouter,
    accept_percent,
    ewma,
    fnlb_jump_hash,
    jump_hash,
    key_sum,
    wait_from_header,
)

MS = 1_000_000
S = 1_000_000_000
NODES = ("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080", "10.0.0.5:8080")


class NoDraws:
    """A random source that fails the test if the router draws from it."""

    def random(self) -> float:
        raise AssertionError("the router drew a random number where the original does not")


class Fixed:
    """A random source returning a fixed sequence, then repeating the last value."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.calls = 0

    def random(self) -> float:
        self.calls += 1
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


# -- Go durations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("12.3ms", 12 * MS + 300_000),
        ("1.2s", 1_200 * MS),
        ("350µs", 350_000),  # micro sign U+00B5
        ("350μs", 350_000),  # Greek mu U+03BC
        ("350us", 350_000),
        ("1m2s", 62 * S),
        ("2h45m0.5s", (2 * 3600 + 45 * 60) * S + 500 * MS),
        ("0s", 0),
        ("0", 0),
        ("-0", 0),
        ("+5ns", 5),
        ("-1.5h", -5400 * S),
        (".5s", 500 * MS),
        ("1.s", S),
        ("1.0000000001s", S),  # finer than a nanosecond: truncated
        ("0.000000001s", 1),
        ("00000000000000000000001s", S),
        ("9223372036854775807ns", (1 << 63) - 1),
        ("-9223372036854775808ns", -(1 << 63)),
        ("2562047h47m16.854775807s", (1 << 63) - 1),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_go_duration_ns(text) == ns


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",  # a unit is needed except for "0"
        "0.0",
        ".s",
        "s",
        "1x",
        "1.2.3s",
        "--1s",
        " 1s",
        "1s ",
        "9223372036854775808ns",
        "2562048h",
        "1" + "0" * 5000 + "s",
    ],
)
def test_bad_go_durations_are_remote_errors(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        parse_go_duration_ns(text)
    assert err.value.reason == "bad_duration"
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("header", "ns"), [(None, 0), ("", 0), ("garbage", 0), ("1.5s", 1500 * MS), ("12ms", 12 * MS)]
)
def test_missing_or_bad_wait_header_counts_as_zero(header: str | None, ns: int) -> None:
    assert wait_from_header(header) == ns


# -- hashing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "buckets", "bucket"),
    # Published vectors of Lamping & Veach's function, shared by several implementations.
    [(1, 1, 0), (42, 57, 43), (0xDEAD10CC, 1, 0), (0xDEAD10CC, 666, 361), (256, 1024, 520)],
)
def test_paper_jump_hash_vectors(key: int, buckets: int, bucket: int) -> None:
    assert jump_hash(key, buckets) == bucket


@pytest.mark.parametrize("jump", [fnlb_jump_hash, jump_hash])
def test_jump_hashes_are_consistent_when_a_bucket_is_appended(
    jump: Callable[[int, int], int],
) -> None:
    for i in range(2000):
        total = key_sum(f"/r/app/fn{i}")
        for n in range(1, 12):
            before, after = jump(total, n), jump(total, n + 1)
            assert 0 <= before < n
            assert after in (before, n)


def test_original_jump_hash_never_homes_a_key_on_the_second_node() -> None:
    """The original's integer jump at least doubles b+1 each step: index 1 is unreachable."""
    homes2 = Counter(fnlb_jump_hash(key_sum(f"/r/app/fn{i}"), 2) for i in range(3000))
    homes5 = Counter(fnlb_jump_hash(key_sum(f"/r/app/fn{i}"), 5) for i in range(3000))
    assert homes2 == {0: 3000}
    assert 1 not in homes5
    assert set(homes5) == {0, 2, 3, 4}


def test_original_jump_hash_pinned_values() -> None:
    """Regression pins of the bit-exact original (computed once by this implementation)."""
    paths = ("/r/app/route", "/r/myapp/hello", "/r/a/b", "")
    sums = [key_sum(p) for p in paths]
    assert sums == [0x160ADF0E50874130, 0x48ACE58778EEF077, 0xBE34F4BE64560689, 0x4DCCF8F6E62EA9AD]
    assert [fnlb_jump_hash(s, 10) for s in sums] == [6, 4, 4, 6]
    assert [fnlb_jump_hash(s, 100) for s in sums] == [88, 10, 52, 21]
    assert [jump_hash(s, 10) for s in sums] == [6, 4, 3, 6]
    assert fnlb_jump_hash(0, 1) == 0
    with pytest.raises(ValueError, match="bucket"):
        fnlb_jump_hash(1, 0)


def test_paper_jump_hash_spreads_keys_evenly() -> None:
    homes = Counter(jump_hash(key_sum(f"/r/app/fn{i}"), 5) for i in range(5000))
    assert set(homes) == set(range(5))
    assert all(800 < c < 1200 for c in homes.values())


# -- wait averages and accept rules -------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "percent"),
    [
        (0, 100),
        (500 * MS - 1, 100),
        (500 * MS, 40),
        (1250 * MS, 25),
        (2 * S - 1, 10),
        (2 * S, 10),
        (2 * S + 1, 10),
        (60 * S, 10),
    ],
)
def test_accept_percent(wait: int, percent: int) -> None:
    assert accept_percent(wait) == percent


def test_ewma_weighs_the_new_sample_a_tenth_and_truncates() -> None:
    assert ewma(1000, 2000) == 1100
    assert ewma(0, 5) == 0  # 0.5 ns truncated, as Go's int64() conversion does


def test_first_sample_is_taken_as_is_then_averaged() -> None:
    router = ClassicRouter(NoDraws())
    assert router.wait_average("n", "/r/a/f") is None
    assert router.observe("n", "/r/a/f", 3 * S) == 3 * S
    assert router.observe("n", "/r/a/f", 0) == int(0.9 * 3 * S)
    assert router.observe_header("n", "/r/a/f", None) == int(0.9 * int(0.9 * 3 * S))
    assert router.observe("n", "/r/a/f", -5 * S) >= 0


# -- routing decisions -------------------------------------------------------------------


def test_no_nodes_means_no_pick() -> None:
    router = ClassicRouter(NoDraws())
    assert router.pick("/r/a/f", ()) is None
    assert router.candidates("/r/a/f", []) == []


def test_home_is_the_jump_hash_over_the_sorted_list_without_draws() -> None:
    router = ClassicRouter(NoDraws())
    shuffled = [NODES[i] for i in (3, 0, 4, 1, 2)]
    for i in range(200):
        key = f"/r/app/fn{i}"
        expected = NODES[fnlb_jump_hash(key_sum(key), len(NODES))]
        assert router.pick(key, shuffled) == expected
        assert router.pick(key, NODES) == expected


def test_two_routers_with_the_same_nodes_agree() -> None:
    a = ClassicRouter(NoDraws())
    b = ClassicRouter(NoDraws(), key_cache_size=1)
    for i in range(100):
        key = f"/t/app/trigger{i}"
        assert a.pick(key, NODES) == b.pick(key, list(reversed(NODES)))


def test_paper_jump_is_selectable() -> None:
    router = ClassicRouter(NoDraws(), jump="paper")
    key = "/r/app/fn7"
    assert router.pick(key, NODES) == NODES[jump_hash(key_sum(key), len(NODES))]


def _home(key: str) -> int:
    return fnlb_jump_hash(key_sum(key), len(NODES))


def test_a_slow_home_passes_the_call_to_the_next_node() -> None:
    key = "/r/app/slow"
    home = _home(key)
    rng = Fixed(0.99)  # every draw refuses
    router = ClassicRouter(rng)
    router.observe(NODES[home], key, 3 * S)
    assert router.pick(key, NODES) == NODES[(home + 1) % len(NODES)]
    assert rng.calls == 1


def test_a_slow_home_accepts_with_its_percentage() -> None:
    key = "/r/app/slow"
    home = _home(key)
    router = ClassicRouter(Fixed(0.09))  # int(9.0) < 10: accepted even above 2 s
    router.observe(NODES[home], key, 3 * S)
    assert router.pick(key, NODES) == NODES[home]
    router = ClassicRouter(Fixed(0.10))  # int(10.0) < 10 is false: refused
    router.observe(NODES[home], key, 3 * S)
    assert router.pick(key, NODES) != NODES[home]


def test_the_walk_wraps_around_the_end_of_the_list() -> None:
    key = next(f"/r/app/f{i}" for i in range(1000) if _home(f"/r/app/f{i}") == len(NODES) - 1)
    router = ClassicRouter(Fixed(0.99))
    router.observe(NODES[-1], key, 3 * S)
    assert router.pick(key, NODES) == NODES[0]


def test_when_every_node_refuses_the_home_is_used() -> None:
    key = "/r/app/everywhere-slow"
    rng = Fixed(0.99)
    router = ClassicRouter(rng, max_passes=3)
    for node in NODES:
        router.observe(node, key, 5 * S)
    assert router.pick(key, NODES) == NODES[_home(key)]
    assert rng.calls == 3 * len(NODES)


def test_the_walk_keeps_going_past_one_pass_like_the_original() -> None:
    key = "/r/app/everywhere-slow"
    home = _home(key)
    # Refuse the first full pass, then accept the next node: the original's endless walk.
    rng = Fixed(*([0.99] * len(NODES)), 0.0)
    router = ClassicRouter(rng)
    for node in NODES:
        router.observe(node, key, 5 * S)
    assert router.pick(key, NODES) == NODES[home]
    assert rng.calls == len(NODES) + 1


def test_accept_rate_between_half_a_second_and_two_seconds() -> None:
    key = "/r/app/warm"
    home = NODES[_home(key)]
    router = ClassicRouter(random.Random(7))
    router.observe(home, key, 500 * MS)  # 40 %
    picks = Counter(router.pick(key, NODES) for _ in range(4000))
    assert 0.36 < picks[home] / 4000 < 0.44


def test_candidates_start_with_the_pick_and_follow_the_list() -> None:
    key = "/r/app/slow"
    home = _home(key)
    router = ClassicRouter(Fixed(0.99))
    router.observe(NODES[home], key, 3 * S)
    first = (home + 1) % len(NODES)
    expected = [NODES[(first + k) % len(NODES)] for k in range(len(NODES))]
    assert router.candidates(key, NODES) == expected


def test_forgetting_a_node_clears_its_averages() -> None:
    router = ClassicRouter(NoDraws())
    router.observe("a", "/r/x/y", 3 * S)
    router.observe("b", "/r/x/y", 3 * S)
    router.forget_node("a")
    assert router.wait_average("a", "/r/x/y") is None
    assert router.wait_average("b", "/r/x/y") == 3 * S


def test_state_stays_bounded() -> None:
    router = ClassicRouter(NoDraws(), key_cache_size=10, max_wait_entries=10)
    for i in range(100):
        router.pick(f"/r/a/{i}", NODES)
        router.observe(NODES[0], f"/r/a/{i}", 1)
    assert router.wait_average(NODES[0], "/r/a/99") == 1
    assert router.wait_average(NODES[0], "/r/a/0") is None


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_passes"):
        ClassicRouter(NoDraws(), max_passes=0)
    with pytest.raises(ValueError, match="key_cache_size"):
        ClassicRouter(NoDraws(), key_cache_size=0)
    with pytest.raises(ValueError, match="max_wait_entries"):
        ClassicRouter(NoDraws(), max_wait_entries=0)


def test_a_list_changed_in_place_is_sorted_afresh() -> None:
    router = ClassicRouter(NoDraws())
    nodes = ["b:1"]
    assert router.pick("/r/a/f", nodes) == "b:1"
    nodes[0] = "a:1"
    assert router.pick("/r/a/f", nodes) == "a:1"
