"""The proxy's per-call shortcuts give the same answers as the slow ways they replace."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from fnlb.proxy.handler import _decoded_path, upstream_headers


@pytest.mark.parametrize(
    "target",
    [
        "/r/app/fn",
        "/r/app/fn?x=1&y=%20z",
        "/r/app/a%20b",
        "/r/app/a%2Fb?q=%2F",
        "/r/app/a+b",
        "/invoke/01ABC?",
        "/t/app/hook/deep/path?x=?",
        "/",
    ],
)
def test_the_path_without_yarl_is_the_decoded_path(target: str) -> None:
    request = make_mocked_request("GET", target)
    assert _decoded_path(request, request.raw_path) == request.path


def test_headers_named_by_connection_are_not_forwarded_and_x_forwarded_are_rewritten() -> None:
    headers = CIMultiDict(
        [
            ("Host", "lb:8080"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "secret"),
            ("X-Keep", "a"),
            ("X-Keep", "b"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-For", "198.51.100.1"),
            ("TE", "trailers"),
        ]
    )
    request = make_mocked_request("POST", "/r/app/fn", headers=headers)
    out = upstream_headers(request)
    assert out[:3] == [("Host", "lb:8080"), ("X-Keep", "a"), ("X-Keep", "b")]
    forwarded = dict(out[3:])
    assert forwarded["X-Forwarded-For"].startswith("203.0.113.7, ")
    assert forwarded["X-Forwarded-Proto"] == "http"
    assert forwarded["X-Forwarded-Host"] == "lb:8080"
    assert len(out) == 6
