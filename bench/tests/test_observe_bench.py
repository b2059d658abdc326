"""bench/observe_cost runs and prints every configuration; bench/proxy's --variant parses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import observe_cost
from bench.proxy import REPO_ROOT, parse_args, parse_variant


def test_observe_cost_prints_a_row_per_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert observe_cost.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for name in (
        "no observer",
        "all off",
        "metrics (default)",
        "metrics + tracing, sampled",
        "metrics + access log",
    ):
        assert f"| {name}" in out


def test_observe_cost_refuses_nonsense() -> None:
    with pytest.raises(SystemExit):
        observe_cost.main(["--calls", "0"])


def test_variant_names_args_and_source_tree(tmp_path: Path) -> None:
    v = parse_variant("metrics off=-call-metrics=false -log-level=error")
    assert (v.name, v.root, v.args) == (
        "metrics off",
        REPO_ROOT,
        ["-call-metrics=false", "-log-level=error"],
    )
    other = tmp_path / "tree"
    (other / "fnlb").mkdir(parents=True)
    (other / "fnlb" / "__main__.py").write_text("")
    assert parse_variant(f"old@{other}=").root == other.resolve()
    optimised = parse_variant(f"pgo%{sys.executable}=-workers=1")
    assert (optimised.name, optimised.python, optimised.args) == (
        "pgo",
        sys.executable,
        ["-workers=1"],
    )
    assert parse_variant("plain=").python == sys.executable
    for bad in ("no-equals", "=args", f"x@{tmp_path}=", "fnlb=-x", f"x%{tmp_path}/none="):
        with pytest.raises(ValueError, match="--variant"):
            parse_variant(bad)
    with pytest.raises(SystemExit):
        parse_args(["--variant", "nope"])
    args = parse_args(["--variant", "a=-access-log", "--only-fnlb"])
    assert args.only_fnlb
    assert [v.name for v in args.variants] == ["a"]


def test_otel_span_cost_measures_our_tracer(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import otel_span_cost

    assert otel_span_cost.main() == 0
    assert "| fnlb.observe.tracing + Zipkin queue |" in capsys.readouterr().out
