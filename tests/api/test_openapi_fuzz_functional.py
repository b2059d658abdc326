"""schemathesis against a running fnlb, lone and cluster: no 5xx, every answer as described.

Generated requests go to every operation of the description fnlb serves
(`/1/lb/openapi.json`); each answer must be below 500 and match the description's status
codes, content types and body schemas. Bounded: MAX_EXAMPLES per operation, no deadline. The
cases run and the 5xx count are printed at the end of the module (the figure in
docs/benchmarks.md):

    python -m pytest tests/api/test_openapi_fuzz_functional.py -q -p no:cacheprovider

Node addresses that fnlb would accept are rewritten to 127.0.0.1 before sending, so the
health checker never looks up or connects to a generated host name: tests talk to loopback
only. Invalid ones are sent as generated.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import msgpack
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.core.result import Ok

from fnlb.api.openapi import DESCRIPTION
from fnlb.config import parse_node_address
from tests.support import running_balancer
from tests.support_proc import FnlbProcess

MAX_EXAMPLES = 50
TOKEN = "fuzz-token-0123456789abcdef"
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
PROBE_CHECKS = CHECKS[1:]
"""`GET /readyz` answers a described 503 while fnlb is not ready (a fresh fnlb without
nodes): that is the probe's answer, not a server error; it must still match the description."""
READINESS: Final = "GET /readyz"
RUN: collections.Counter[str] = collections.Counter()
STATUSES: collections.defaultdict[str, set[int]] = collections.defaultdict(set)


@dataclass(frozen=True)
class Target:
    mode: str
    base: str
    headers: dict[str, str]


@pytest.fixture(scope="module", params=["lone", "cluster"])
def fuzz_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    mode: str = request.param
    args: list[str] = []
    headers: dict[str, str] = {}
    if mode == "cluster":
        home = tmp_path_factory.mktemp("fuzz")
        keyring, tokens = home / "keyring.json", home / "tokens"
        keyring.write_text(json.dumps(["MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="]))
        tokens.write_text(f"fuzzer:{TOKEN}\n")
        for path in (keyring, tokens):
            path.chmod(0o600)
        args = [
            "-gossip-listen=127.0.0.1:0", f"-gossip-keyring-file={keyring}",
            f"-mgmt-tokens-file={tokens}", "-node-name=fuzz-peer",
        ]  # fmt: skip
        headers = {"Authorization": f"Bearer {TOKEN}"}
    proc = FnlbProcess(*args)
    try:
        yield Target(mode, proc.mgmt_url(""), headers)
    finally:
        proc.stop()
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    assert capture is not None
    line = (
        f"management API fuzz ({mode}): {RUN[mode]} cases, {RUN[mode + ' 5xx']} answers 5xx; "
        f"statuses seen: {sorted(STATUSES[mode])}"
    )
    with capture.global_and_fixture_disabled():  # the figure shows without -s
        print(f"\n{line}")


def loopback_only(body: object) -> None:
    """Rewrite a node address fnlb would accept to 127.0.0.1 (same port); see the docstring."""
    if isinstance(body, dict) and isinstance(body.get("node"), str):
        try:
            _, port = parse_node_address(body["node"])
        except ValueError:
            return
        body["node"] = f"127.0.0.1:{port}"


@schemathesis.serializer("application/msgpack")
def to_msgpack(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """Bodies of the peer-to-peer hold: generated values packed as a peer would send them."""
    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True)
    except (OverflowError, ValueError):  # integers beyond 64 bits: send their text instead
        packed = msgpack.packb(repr(value))
    return packed


def fuzz_operation(
    target: Target, operation: schemathesis.APIOperation[Any, Any, Any, Any]
) -> None:
    """MAX_EXAMPLES generated requests to one operation, each answer checked."""

    @given(case=operation.as_strategy(), anonymous=st.booleans())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def one(case: schemathesis.Case[Any], anonymous: bool) -> None:
        loopback_only(case.body)
        headers = {} if anonymous else target.headers  # answers without a token are checked too
        response = case.call(base_url=target.base, headers=headers, timeout=10)
        RUN[target.mode] += 1
        probe = operation.label == READINESS
        not_ready = probe and response.status_code == 503
        RUN[f"{target.mode} 5xx"] += response.status_code >= 500 and not not_ready
        STATUSES[target.mode].add(response.status_code)
        case.validate_response(response, checks=PROBE_CHECKS if probe else CHECKS)

    one()


def test_every_answer_matches_the_description(fuzz_target: Target) -> None:
    served = schemathesis.openapi.from_url(f"{fuzz_target.base}/1/lb/openapi.json")
    loaded = list(served.get_all_operations())
    operations = [result.ok() for result in loaded if isinstance(result, Ok)]
    assert len(operations) == len(loaded)
    described = {f"{m.upper()} {p}" for p, ops in DESCRIPTION["paths"].items() for m in ops}
    # schemathesis leaves out the description's own URL; everything else is fuzzed
    assert {op.label for op in operations} == described - {"GET /1/lb/openapi.json"}
    for operation in operations:
        fuzz_operation(fuzz_target, operation)
    assert RUN[f"{fuzz_target.mode} 5xx"] == 0


async def test_the_description_covers_every_management_route() -> None:
    async with running_balancer() as lb:
        assert lb.mgmt_address is not None
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://{lb.mgmt_address}/1/lb/openapi.json") as r,
        ):
            served = await r.json()
        # the management application's own routes (the proxy's catch-all and the
        # method-not-allowed route of /1/lb/nodes answer no operation of their own)
        (app,) = [r.app for r in lb._runners if isinstance(r, web.AppRunner)]
        app_routes = {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None and route.method != "*"
        }
    assert served == DESCRIPTION
    assert served["openapi"] == "3.1.0"
    described = {(m.upper(), p) for p, ops in DESCRIPTION["paths"].items() for m in ops}
    assert app_routes == described
