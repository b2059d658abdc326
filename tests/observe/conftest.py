"""Every observability test runs on both data planes: metrics, traces and the access log are
told the same things by each (fnlb.proxy.handler and fnlb.proxy.fast_server)."""

from __future__ import annotations

import pytest

from tests import support


@pytest.fixture(autouse=True, params=["fast", "aiohttp"])
def data_plane(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    plane: str = request.param
    monkeypatch.setitem(support.BALANCER_DEFAULTS, "data_plane", plane)
    return plane
