"""The nftables rulesets and tc commands faults render to (no root needed: nothing runs)."""

from __future__ import annotations

import pytest
from harness.faults import (
    Blackhole,
    Fault,
    Loss,
    OneWay,
    Partition,
    render_ruleset,
    tbf_clear_command,
    tbf_command,
)

ADDR = {"a": "10.213.0.1", "b": "10.213.0.2", "c": "10.213.0.3"}


def rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def test_no_fault_leaves_no_table() -> None:
    assert rules(render_ruleset("a", ADDR, [])) == [
        "table inet fnlbct",
        "delete table inet fnlbct",
    ]


def test_a_partition_is_each_side_ignoring_the_other() -> None:
    cut = Partition(frozenset({"a"}), frozenset({"b", "c"}))
    assert "ip saddr { 10.213.0.2, 10.213.0.3 } drop" in rules(render_ruleset("a", ADDR, [cut]))
    b = rules(render_ruleset("b", ADDR, [cut]))
    assert "ip saddr { 10.213.0.1 } drop" in b
    assert not any("10.213.0.3" in line for line in b)


def test_every_drop_is_at_a_receiver_so_senders_see_no_local_error() -> None:
    every_fault: list[Fault] = [
        Partition(frozenset({"a"}), frozenset({"b"})),
        OneWay("a", "c"),
        Blackhole("b"),
        Loss("a", 30),
    ]
    for host in ADDR:
        text = render_ruleset(host, ADDR, every_fault)
        assert "hook output" not in text
        assert "oifname" not in text


def test_a_one_way_cut_drops_only_at_the_destination() -> None:
    cut = OneWay("a", "b")
    assert "ip saddr 10.213.0.1 drop" in rules(render_ruleset("b", ADDR, [cut]))
    assert rules(render_ruleset("a", ADDR, [cut]))[-1] == "delete table inet fnlbct"
    assert rules(render_ruleset("c", ADDR, [cut]))[-1] == "delete table inet fnlbct"


def test_a_black_hole_ignores_everyone_but_loopback_and_everyone_ignores_it() -> None:
    text = rules(render_ruleset("a", ADDR, [Blackhole("a")]))
    assert text.index('iifname "lo" accept') < text.index('iifname != "lo" drop')
    assert "ip saddr 10.213.0.1 drop" in rules(render_ruleset("b", ADDR, [Blackhole("a")]))


def test_loss_on_a_port_rolls_the_dice_once_per_packet() -> None:
    text = rules(render_ruleset("a", ADDR, [Loss("a", 20, "udp", 8946, "in")]))
    assert 'iifname != "lo" meta l4proto udp th dport 8946 numgen random mod 10000 < 2000 drop' in (
        text
    )
    assert (
        'iifname != "lo" meta l4proto udp th sport 8946 th dport != 8946 '
        "numgen random mod 10000 < 2000 drop"
    ) in text
    assert rules(render_ruleset("b", ADDR, [Loss("a", 20, "udp", 8946, "in")]))[-1] == (
        "delete table inet fnlbct"
    )


def test_loss_out_of_a_host_is_rolled_at_the_others_and_fractions_of_a_percent_work() -> None:
    assert 'iifname != "lo" numgen random mod 10000 < 50 drop' in rules(
        render_ruleset("a", ADDR, [Loss("a", 0.5)])
    )
    assert "ip saddr 10.213.0.1 numgen random mod 10000 < 50 drop" in rules(
        render_ruleset("b", ADDR, [Loss("a", 0.5, direction="out")])
    )
    assert "ip saddr 10.213.0.1 meta l4proto tcp drop" in rules(
        render_ruleset("c", ADDR, [Loss("a", 100, "tcp")])
    )


def test_deterministic_drops_come_before_random_loss() -> None:
    text = rules(render_ruleset("a", ADDR, [Loss("a", 10), OneWay("b", "a")]))
    assert text.index("ip saddr 10.213.0.2 drop") < text.index(
        'iifname != "lo" numgen random mod 10000 < 1000 drop'
    )


@pytest.mark.parametrize(("pct", "port"), [(-1, None), (101, None), (10, 0), (10, 70000)])
def test_impossible_loss_is_refused(pct: float, port: int | None) -> None:
    with pytest.raises(ValueError, match="not in"):
        Loss("a", pct, port=port)


def test_tbf_limits_the_rate_with_a_bucket_of_at_least_a_few_frames() -> None:
    argv = tbf_command("eth0", 400)
    assert argv[:6] == ["tc", "qdisc", "replace", "dev", "eth0", "root"]
    assert argv[argv.index("rate") + 1] == "400kbit"
    assert int(argv[argv.index("burst") + 1]) >= 4 * 1514
    assert tbf_clear_command("eth0") == ["tc", "qdisc", "del", "dev", "eth0", "root"]
    with pytest.raises(ValueError, match="at least 1"):
        tbf_command("eth0", 0)
