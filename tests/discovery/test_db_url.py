from __future__ import annotations

import pytest

from fnlb.discovery.db_url import DbChoice, parse_db
from fnlb.errors import ConfigError


@pytest.mark.parametrize(
    ("db", "choice"),
    [
        ("sqlite3://:memory:", DbChoice("memory")),
        ("", DbChoice("memory")),
        ("k8s", DbChoice("k8s")),
        ("sqlite3:///var/lib/fnlb/nodes.db", DbChoice("sqlite", "/var/lib/fnlb/nodes.db")),
        ("sqlite3://nodes.db", DbChoice("sqlite", "nodes.db")),
    ],
)
def test_the_original_db_urls(db: str, choice: DbChoice) -> None:
    assert parse_db(db) == choice


@pytest.mark.parametrize(
    "db",
    [
        "postgres://fnlb:s3cret@db:5432/fn",
        "mysql://root:s3cret@tcp(db:3306)/fn",
        "s3cret",
        "xx-s3cret://x",
    ],
)
def test_other_stores_are_refused_without_echoing_the_url(db: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_db(db)
    assert "s3cret" not in str(e.value)
    assert str(e.value).startswith("-db:")
