"""Fixtures of the cluster tests: the `harness` package importable, a Network per test.

`cluster-tests/` is not a package (its name has a dash), so this file puts it on sys.path for
`import harness`; mypy finds the same package by `explicit_package_bases`.
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.netns import Network, unavailable_reason


@pytest.fixture
def netns_available() -> None:
    """Skip, with the reason, where network namespaces cannot be made (not root, no nft)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def network(netns_available: None) -> Iterator[Network]:
    """A fresh private Network; skipped (with the reason) where namespaces cannot be made.

    When the test fails, the tail of every process log is shown with the failure. Everything
    is deleted afterwards, whatever happened.
    """
    with Network() as net:
        yield net


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that used a Network shows the end of every process log it started."""
    report = yield
    net = getattr(item, "funcargs", {}).get("network")
    if report.when == "call" and report.failed and isinstance(net, Network):
        report.sections.append(("process logs (tails)", net.log_tails()))
    return report
