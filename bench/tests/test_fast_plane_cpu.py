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


def test_a_child_run_makes_its_calls_and_exits_zero() -> None:
    from bench.fast_plane_cpu import main

    assert main(["--child", "hotset", "--child-observer", "metrics (default)", "--calls=50"]) == 0


def test_instructions_refuse_nonsense() -> None:
    import pytest

    from bench.fast_plane_cpu import main

    with pytest.raises(SystemExit):
        main(["--instructions", "--warm=0"])


def test_instructions_per_call_come_from_two_callgrind_runs() -> None:
    """The count is a difference of two runs' instructions per extra call: positive, and
    what a call costs, not the interpreter's start-up (hundreds of millions)."""
    import shutil

    import pytest

    from bench.fast_plane_cpu import instructions_per_call

    if shutil.which("valgrind") is None:
        pytest.skip("needs valgrind (scripts/bootstrap.sh installs it)")
    per_call = instructions_per_call("rendezvous", None, warm=20, calls=100)
    assert 1_000 < per_call < 10_000_000


def test_the_call_path_reads_a_virtual_clock_while_measured_and_the_real_one_after() -> None:
    """Instruction counts must not depend on valgrind's speed: the proxy's and the
    observer's `time.time` step by a fixed amount per read inside `virtual_clock`."""
    import time

    from bench.fast_plane_cpu import virtual_clock
    from fnlb.observe import calls
    from fnlb.proxy import fast_server

    real = time.time
    with virtual_clock(start=100.0, step=0.5) as clock:
        assert vars(fast_server)["time"].time() == 100.0
        assert vars(calls)["time"].time() == 100.5
        assert clock() == 101.0
    assert time.time is real
    assert vars(fast_server)["time"] is time
    assert vars(calls)["time"] is time


def test_builds_compares_the_compiled_call_path_with_its_sources() -> None:
    """--builds runs each row in children on each build; a child that ran the other build
    than asked would raise (fnlb/compiled.py's FNLB_PURE_PYTHON switch)."""
    import pytest

    from bench.fast_plane_cpu import time_in_child
    from fnlb import compiled

    assert time_in_child("rendezvous", None, 50, "sources") > 0
    if compiled.BUILD != compiled.COMPILED:
        pytest.skip(f"no fresh compiled build here ({compiled.BUILD})")
    assert time_in_child("rendezvous", None, 50, "compiled") > 0
    done = run_bench("bench.fast_plane_cpu", "--builds", "--calls=100", "--rounds=1", timeout=120)
    assert done.returncode == 0, done.stderr
    assert set(POLICIES) <= set(table_rows(done.stdout))
