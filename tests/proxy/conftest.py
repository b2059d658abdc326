"""Every proxy test runs on both data planes: they are the behaviour both must have."""

from __future__ import annotations

import pytest

from tests import support


@pytest.fixture(autouse=True, params=["fast", "aiohttp"])
def data_plane(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    plane: str = request.param
    monkeypatch.setitem(support.BALANCER_DEFAULTS, "data_plane", plane)
    return plane
