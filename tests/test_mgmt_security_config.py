"""Start-up refusals of the management plane's security settings, and secrets kept out of
messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from fnlb.cli import main
from fnlb.config import Settings, settings_from
from fnlb.errors import ConfigError
from fnlb.redact import redact_urls
from tests.support_tls import TestCa

TOKEN = "0123456789abcdef0123456789abcdef"


def parse(*argv: str, env: dict[str, str] | None = None) -> Settings:
    """Settings as `fnlb serve` reads and checks them before it starts."""
    from fnlb.api.security import validate_security
    from fnlb.cli import make_parser
    from fnlb.config import add_settings_arguments

    parser = make_parser("fnlb", "test")
    add_settings_arguments(parser)
    settings = settings_from(parser.parse_args(list(argv)), env or {})
    validate_security(settings)
    return settings


def test_a_cluster_peer_refuses_an_open_api_on_the_traffic_port() -> None:
    with pytest.raises(ConfigError, match="open on the traffic port :8081"):
        parse("-gossip-listen=127.0.0.1:0", "-gossip-insecure")
    with pytest.raises(ConfigError, match="-mgmt-insecure"):
        parse("-listen=:9000", "-mgmt-listen=:9000", "-join=peer", "-gossip-insecure")
    # ...unless told so, or tokens guard it, or the API has its own port
    assert parse("-gossip-listen=127.0.0.1:0", "-gossip-insecure", "-mgmt-insecure").mgmt_insecure
    s = parse("-gossip-listen=127.0.0.1:0", "-gossip-insecure", env={"FNLB_MGMT_TOKEN": TOKEN})
    assert s.mgmt_token == TOKEN
    assert parse("-gossip-listen=127.0.0.1:0", "-gossip-insecure", "-mgmt-listen=127.0.0.1:9")
    # a lone fnlb keeps the original's open API on its one port
    assert not parse().cluster_mode


def test_a_bad_inline_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="-mgmt-token: token shorter than 16"):
        parse(env={"FNLB_MGMT_TOKEN": "short"})
    with pytest.raises(ConfigError, match="no spaces or colons"):
        parse("-mgmt-token", "has:colon:0123456789abcdef")


def test_tls_settings_that_cannot_work_are_refused(tmp_path: Path) -> None:
    ca = TestCa(tmp_path)
    srv = ca.issue("server")
    cert, key = str(srv.cert), str(srv.key)
    with pytest.raises(ConfigError, match="-tls-cert and -tls-key: give both"):
        parse(f"-tls-cert={cert}")
    with pytest.raises(ConfigError, match="-mgmt-tls-cert and -mgmt-tls-key"):
        parse(f"-mgmt-tls-key={key}", "-mgmt-listen=:8082")
    with pytest.raises(ConfigError, match="share one listener"):
        parse(f"-mgmt-tls-cert={cert}", f"-mgmt-tls-key={key}")
    with pytest.raises(ConfigError, match="needs -mgmt-tls-cert"):
        parse(f"-mgmt-tls-client-ca={ca.cert}", "-mgmt-listen=:8082")
    with pytest.raises(ConfigError, match="cannot load a certificate and its key"):
        parse(f"-tls-cert={ca.cert}", f"-tls-key={key}")  # the CA's certificate, not the key's
    srv.key.chmod(0o644)
    with pytest.raises(ConfigError, match=r"-tls-key .* mode 0644"):
        parse(f"-tls-cert={cert}", f"-tls-key={key}")
    srv.key.chmod(0o600)
    assert parse(f"-tls-cert={cert}", f"-tls-key={key}").tls_cert == cert
    # a cluster peer's TLS management port still takes write acks (hold over https)
    assert parse(
        "-mgmt-listen=:8082", f"-mgmt-tls-cert={cert}", f"-mgmt-tls-key={key}",
        "-gossip-listen=127.0.0.1:0", "-gossip-insecure",
    ).write_acks == 1  # fmt: skip


def test_redaction_keeps_the_user_and_drops_the_password() -> None:
    assert redact_urls("-db=mysql://root:p@ss:w0rd@tcp(db:3306)/fnlb") == (
        "-db=mysql://root:***@tcp(db:3306)/fnlb"
    )
    assert redact_urls("a postgres://u:pw@h/x b http://v:w@y") == (
        "a postgres://u:***@h/x b http://v:***@y"
    )
    for kept in ("sqlite3://:memory:", "http://host:8080/path", "k8s"):
        assert redact_urls(kept) == kept


def test_a_db_url_password_never_reaches_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "-db=mysql://fnlb:hunter2-secret@tcp(db:3306)/fnlb"])
    err = capsys.readouterr().err
    assert code == 2
    assert "mysql:// stores are not supported" in err
    assert "hunter2" not in err


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_lines_never_carry_a_url_password(fmt: str) -> None:
    import logging

    from fnlb.logs import formatter

    record = logging.LogRecord(
        "fnlb.x", logging.WARNING, __file__, 1, "cannot reach %s", ("http://u:pw1@h/",), None
    )
    record.peer = "https://admin:pw2@peer:8082"
    line = formatter(fmt).format(record)
    assert "pw1" not in line
    assert "pw2" not in line
    assert "http://u:***@h/" in line
    assert "https://admin:***@peer:8082" in line


def test_a_balancer_built_in_code_obeys_the_same_refusals() -> None:
    from fnlb.server import Balancer

    shared = Settings(
        listen="127.0.0.1:18081", mgmt_listen="127.0.0.1:18081",
        gossip_listen="127.0.0.1:0", gossip_insecure=True,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="open on the traffic port"):
        Balancer(shared)
