"""The original fnlb's flags, their defaults, FNLB_* variables, and clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fnlb.cli import main, make_parser
from fnlb.config import (
    Settings,
    add_settings_arguments,
    parse_node_address,
    parse_semver,
    settings_from,
    worker_count,
)
from fnlb.errors import ConfigError


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = make_parser("fnlb", "test")
    add_settings_arguments(parser)
    return settings_from(parser.parse_args(argv), env or {})


def test_defaults_are_the_original_fnlbs() -> None:
    s = parse([])
    assert (s.listen, s.mgmt_listen, s.nodes, s.db) == (":8081", ":8081", "", "sqlite3://:memory:")
    assert s.min_api_version == "0.0.235"
    assert (s.hc_interval, s.hc_path, s.hc_unhealthy, s.hc_healthy, s.hc_timeout) == (
        3.0,
        "/version",
        2,
        1,
        5.0,
    )
    assert (s.shutdown_timeout, s.zipkin, s.target_port) == (0.0, "", 8080)
    assert (s.namespace, s.label_selector) == ("", "")


@pytest.mark.parametrize(
    "argv",
    [
        ["-listen", ":9000", "-hc-interval", "7"],
        ["--listen", ":9000", "--hc-interval", "7"],
        ["-listen=:9000", "-hc-interval=7"],
        ["--listen=:9000", "--hc-interval=7"],
    ],
)
def test_single_and_double_dash_with_or_without_equals(argv: list[str]) -> None:
    s = parse(argv)
    assert s.listen == ":9000"
    assert s.hc_interval == 7.0


def test_every_original_flag_is_accepted() -> None:
    s = parse(
        [
            "-listen=:1", "-mgmt-listen=:2", "-nodes=a:1,b:2", "-min-api-version=0.3.1",
            "-hc-interval=1", "-hc-path=/x", "-hc-unhealthy=3", "-hc-healthy=2",
            "-hc-timeout=4", "-shutdown-timeout=5", "-db=sqlite3://:memory:",
            "-namespace=fn", "-label-selector=app=fn", "-target-port=9090", "-zipkin=",
        ]
    )  # fmt: skip
    assert (s.mgmt_listen, s.nodes, s.hc_path, s.target_port) == (":2", "a:1,b:2", "/x", 9090)
    assert (s.namespace, s.label_selector, s.shutdown_timeout) == ("fn", "app=fn", 5.0)


def test_environment_then_flag_precedence() -> None:
    env = {"FNLB_HC_INTERVAL": "9", "FNLB_NODES": "x:1", "LOG_LEVEL": "DEBUG"}
    s = parse([], env)
    assert (s.hc_interval, s.nodes, s.log_level) == (9.0, "x:1", "debug")
    assert parse(["-hc-interval", "2"], env).hc_interval == 2.0


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["-hc-interval", "soon"], {}, "-hc-interval"),
        (["-hc-interval", "0"], {}, "-hc-interval"),
        (["-hc-unhealthy", "0"], {}, "-hc-unhealthy"),
        (["-listen", "nowhere"], {}, "-listen"),
        (["-listen", ":99999"], {}, "-listen"),
        (["-nodes", "a:1,b"], {}, "-nodes"),
        (["-min-api-version", "latest"], {}, "-min-api-version"),
        (["-hc-path", "version"], {}, "-hc-path"),
        (["-workers", "-1"], {}, "-workers"),
        (["-workers", "2", "-data-plane", "aiohttp"], {}, "-workers: needs -data-plane=fast"),
        (["-workers", "2", "-tls-cert", "c.pem", "-tls-key", "k.pem"], {}, "-workers with -tls"),
        (["-data-plane", "hyper"], {}, "-data-plane"),
        ([], {"FNLB_HC_TIMEOUT": "nan"}, "FNLB_HC_TIMEOUT"),
        ([], {"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        (["-zipkin", "ftp://zipkin:9411/api/v2/spans"], {}, "-zipkin"),
        (["-zipkin", "http://zipkin:99999"], {}, "-zipkin"),
        (["-trace-sample-rate", "-0.1"], {}, "-trace-sample-rate"),
        (["-warm-wait", "soon"], {}, "-warm-wait: 'soon' is not a duration"),
        (["-warm-wait=-300ms"], {}, "-warm-wait: must be between 0 and 10s"),
        (["-warm-wait", "1m"], {}, "-warm-wait: must be between 0 and 10s"),
        ([], {"FNLB_WARM_WAIT": "300"}, "-warm-wait: must be between"),
    ],
)
def test_invalid_values_name_the_flag(argv: list[str], env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse(argv, env)


def test_warm_wait_is_off_by_default() -> None:
    assert parse([]).warm_wait_s == 0.0  # docs/routing.md, *Wait for warm*: opt-in


@pytest.mark.parametrize(
    ("value", "seconds"), [("0", 0.0), ("300ms", 0.3), ("0.3", 0.3), ("1.5s", 1.5), ("0s", 0.0)]
)
def test_warm_wait_takes_a_go_duration_or_seconds(value: str, seconds: float) -> None:
    assert parse([f"-warm-wait={value}"]).warm_wait_s == pytest.approx(seconds)
    assert parse([], {"FNLB_WARM_WAIT": value}).warm_wait_s == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("warn", "warn"),
        ("WARN", "warn"),
        ("trace", "trace"),
        ("fatal", "fatal"),
        ("panic", "panic"),
    ],
)
def test_log_level_takes_the_originals_logrus_names(level: str, expected: str) -> None:
    assert parse([], {"LOG_LEVEL": level}).log_level == expected


def test_observability_flags() -> None:
    s = parse(
        ["-zipkin=http://zipkin:9411/api/v1/spans", "-trace-sample-rate=0.25", "-log-format=json",
         "-access-log"],
        {},
    )  # fmt: skip
    assert (s.zipkin, s.trace_sample_rate) == ("http://zipkin:9411/api/v1/spans", 0.25)
    assert (s.log_format, s.access_log, s.call_metrics) == ("json", True, True)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fnlb", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-bogus"], "unrecognized arguments: -bogus"),
        (["-hc-interval=abc"], "-hc-interval"),
        (["-db=k8s", "-kubeconfig=/nonexistent/kubeconfig"], "cannot read it"),
        (["-db=k8s", "-nodes=10.0.0.1:8080"], "Kubernetes owns the node list"),
        (["-db=sqlite3:///proc/fnlb-cannot/nodes.db"], "cannot open the node file"),
        (
            ["-db=sqlite3:///tmp/x.db", "-join=127.0.0.1", "-gossip-insecure", "-mgmt-insecure"],
            "-state-dir",
        ),
        (["-zipkin=zipkin:9411"], "-zipkin"),
        (["-trace-sample-rate=2"], "-trace-sample-rate"),
        (["-log-format=xml"], "-log-format"),
        (["-db=postgres://fnlb:s3cret@db/fn"], "postgres:// stores are not supported"),
        (["frobnicate"], "unknown command"),
    ],
)
def test_cli_errors_exit_2_with_a_message(args: list[str], needle: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "s3cret" not in result.stderr  # a -db URL's password never reaches the logs


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert main(["help"]) == 0
    out = capsys.readouterr().out
    assert "fnlb" in out
    assert "serve" in out


@pytest.mark.parametrize(
    "addr", ["a:1", "fn-1.example.com:8080", "10.0.0.1:65535", "[::1]:8080", "host_x:80"]
)
def test_valid_node_addresses(addr: str) -> None:
    parse_node_address(addr)


@pytest.mark.parametrize(
    "addr",
    [
        "", "a", ":80", "a:", "a:0", "a:65536", "a:-1", "a:8o", "::1:80", "[::1:80",
        "[zz]:80", "-bad-:80", "a b:80", "1.2.3.999:80", "x" * 300 + ":80",
    ],
)  # fmt: skip
def test_invalid_node_addresses(addr: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_node_address(addr)


@pytest.mark.parametrize("addr", ["http://host:80", "https://10.0.0.1:8080", "http://[::1]:80"])
def test_a_node_address_with_a_scheme_says_to_drop_the_scheme(addr: str) -> None:
    with pytest.raises(ValueError, match="without a scheme"):
        parse_node_address(addr)


def test_semver() -> None:
    assert parse_semver("0.3.579") == (0, 3, 579)
    assert parse_semver("v1.2.3-rc1") == (1, 2, 3)
    assert parse_semver("0.3.579") > parse_semver("0.0.235")
    with pytest.raises(ValueError, match="semantic"):
        parse_semver("1.2")


def test_cluster_mode_only_when_asked_and_join_is_repeatable() -> None:
    assert not parse([]).cluster_mode
    s = parse(["-join", "a,b:7000", "--join=[::1]", "-gossip-insecure", "-mgmt-listen=:8082"])
    assert s.cluster_mode
    assert s.join == ("a", "b:7000", "[::1]")
    assert s.gossip_insecure is True
    assert parse(
        ["-gossip-listen", ":8946", "-gossip-insecure=true", "-mgmt-insecure"]
    ).cluster_mode
    assert parse(["-gossip-insecure=false"]).gossip_insecure is False


def test_cluster_mode_without_a_key_explains_how_to_make_one() -> None:
    with pytest.raises(ConfigError, match="fnlb keygen"):
        parse(["-join", "peer"])
    with pytest.raises(ConfigError, match="-join"):
        parse(["-join", "bad peer", "-gossip-insecure"])
    with pytest.raises(ConfigError, match="-gossip-profile"):
        parse(["-gossip-profile", "wan"])


def test_workers_default_to_the_cpus_except_where_workers_cannot_serve() -> None:
    def count(*argv: str) -> int:
        return worker_count(parse(list(argv)), cpus=4)

    assert count() == 4  # the default: one per CPU fnlb may use
    assert count("-workers", "0") == 4
    assert count("-workers", "1") == 1  # one process, no workers
    assert count("-workers", "3") == 3
    assert count("-data-plane", "aiohttp") == 1  # workers need the fast plane
    tls = ("-tls-cert", "c.pem", "-tls-key", "k.pem")
    assert count(*tls) == 1  # TLS on the shared port (the default): one process
    assert count(*tls, "-mgmt-listen", "127.0.0.1:9000") == 4  # the API on its own port
    assert count("-workers", "2", *tls, "-mgmt-listen", "127.0.0.1:9000") == 2
