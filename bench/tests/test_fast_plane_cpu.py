"""bench/fast_plane_cpu drives the fast plane in memory: every call answered, one row each
routing policy. It asserts that the benchmark works, never a speed."""

from __future__ import annotations

import uvloop

from bench.fast_plane_cpu import measure
from bench.tests.support import run_bench, table_rows
from fnlb.routing.policies import POLICIES


def test_every_policy_answers_every_call_in_memory() -> None:
    for policy in POLICIES:
        assert uvloop.run(measure(policy, 500)) > 0


def test_every_observer_configuration_answers_every_call() -> None:
    from bench.fast_plane_cpu import OBSERVERS

    for name in OBSERVERS:
        assert uvloop.run(measure("hotset", 300, name)) > 0


def test_observe_prints_a_row_per_observer_configuration() -> None:
    from bench.fast_plane_cpu import OBSERVERS

    done = run_bench("bench.fast_plane_cpu", "--calls=200", "--rounds=1", "--observe", timeout=60)
    assert done.returncode == 0, done.stderr
    assert set(OBSERVERS) <= set(table_rows(done.stdout))


def test_the_command_prints_a_row_per_policy() -> None:
    done = run_bench("bench.fast_plane_cpu", "--calls=300", "--rounds=1", timeout=60)
    assert done.returncode == 0, done.stderr
    assert set(POLICIES) <= set(table_rows(done.stdout))
    assert "rerun: python -m bench.fast_plane_cpu" in done.stdout
