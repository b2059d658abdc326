"""Every proxy test runs on both data planes: they are the behaviour both must have."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

from tests import support


@pytest.fixture(autouse=True, params=["fast", "aiohttp"])
def data_plane(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    plane: str = request.param
    monkeypatch.setitem(support.BALANCER_DEFAULTS, "data_plane", plane)
    return plane


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Both loops: `fnlb serve` runs on uvloop, whose transports differ from asyncio's (they
    are not `asyncio.Transport` subclasses, for one)."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
