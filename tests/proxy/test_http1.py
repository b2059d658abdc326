"""The fast plane's HTTP/1.1 helpers give what the aiohttp path's slower ways give."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import make_mocked_request

from fnlb.proxy.http1 import (
    connection_options,
    decoded_path,
    is_chunked,
    json_answer,
    node_address,
    without_named,
)


@pytest.mark.parametrize(
    "target",
    ["/r/app/fn", "/r/app/fn?x=1&y=%20z", "/r/app/a%20b", "/r/app/a%2Fb?q=%2F", "/r/app/a+b", "/"],
)
def test_decoded_path_is_aiohttps_request_path(target: str) -> None:
    assert decoded_path(target.encode()) == make_mocked_request("GET", target).path


def test_connection_options_name_only_extra_headers() -> None:
    assert connection_options(b"keep-alive") == frozenset()
    assert connection_options(b"Close") == frozenset()
    assert connection_options(b"keep-alive, X-Hop ,Foo") == {b"x-hop", b"foo"}


def test_without_named_drops_every_field_of_a_named_header() -> None:
    crlf = b"\r\n"
    fields = [b"A", b": ", b"1", crlf, b"X-Hop", b": ", b"2", crlf, b"x-hop", b": ", b"3", crlf]
    assert without_named(fields, frozenset({b"x-hop"})) == fields[:4]


def test_chunked_is_the_last_coding() -> None:
    assert is_chunked(b"chunked")
    assert is_chunked(b"gzip, Chunked")
    assert not is_chunked(b"gzip")


def test_json_answer_is_a_whole_framed_message() -> None:
    raw = json_answer(503, "no node", close=True)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nConnection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"msg": "no node"}
    assert json_answer(503, "no node", close=False, head_only=True) + body != raw


def test_node_address() -> None:
    assert node_address("10.0.0.1:8080") == ("10.0.0.1", 8080)
    assert node_address("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError, match="no port"):
        node_address("host")
