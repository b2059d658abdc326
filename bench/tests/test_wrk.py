"""The wrk driver: its Lua script spreads calls over the keys, its output is read exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._wrk import RESULT_MARK, lua_script, parse_wrk_output, wrk_command

WRK_STDOUT = f"""\
Running 10s test @ http://127.0.0.1:8080
  1 threads and 32 connections
  Latency Distribution
     50%    1.20ms
     99%    2.00ms
  250000 requests in 10.00s, 30.00MB read
Requests/sec:  25000.00
{RESULT_MARK}{{"requests":250000,"duration_us":10000000,"p50_us":1200,"p99_us":2050,\
"connect":0,"read":1,"write":0,"status":3,"timeout":2}}
"""


def test_parse_reads_throughput_latency_and_all_errors() -> None:
    result = parse_wrk_output(WRK_STDOUT)
    assert result.requests == 250000
    assert result.rps == pytest.approx(25000.0)
    assert result.p50_ms == pytest.approx(1.2)
    assert result.p99_ms == pytest.approx(2.05)
    assert result.errors == 6


def test_parse_without_result_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="WRK_RESULT"):
        parse_wrk_output("Requests/sec: 1.0\n")


def test_script_cycles_through_every_function_path() -> None:
    script = lua_script(200, app="a")
    assert "local n = 200" in script
    assert '"/r/a/fn" .. i' in script
    assert "latency:percentile(99)" in script


def test_a_paced_script_waits_after_each_answer() -> None:
    assert "delay" not in lua_script(5)
    assert "delay = function()\n  return 7\nend" in lua_script(5, delay_ms=7)
    assert "return 1\n" in lua_script(5, delay_ms=0)  # wrk's timer: at least 1 ms


def test_script_needs_at_least_one_key() -> None:
    with pytest.raises(ValueError, match="keys"):
        lua_script(0)


def test_command_bounds_the_run_and_asks_for_latency() -> None:
    cmd = wrk_command("http://x", Path("s.lua"), duration=3, connections=8)
    assert cmd[:5] == ["wrk", "-t1", "-c8", "-d3s", "--latency"]
