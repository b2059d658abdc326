from __future__ import annotations

import pytest

from fnlb.api.probes import readiness_problems


@pytest.mark.parametrize(
    ("serving", "draining", "nodes", "joined", "source", "problems"),
    [
        (True, False, 3, None, (True, ""), []),
        (True, False, 3, True, (True, ""), []),
        (False, False, 3, None, (True, ""), ["not listening yet"]),
        (True, False, 0, None, (True, ""), ["no Fn nodes known"]),
        (True, False, 3, False, (True, ""), ["not joined to the gossip cluster yet"]),
        # the source's reason replaces "no nodes": an empty list is its consequence
        (True, False, 0, None, (False, "API said 403"), ["API said 403"]),
        (False, False, 0, False, (True, ""), [
            "not listening yet", "no Fn nodes known", "not joined to the gossip cluster yet"
        ]),
        # once SIGTERM arrived nothing else matters: Kubernetes must stop sending calls
        (True, True, 3, True, (True, ""), ["shutting down"]),
    ],
)  # fmt: skip
def test_readiness_names_every_reason(
    serving: bool,
    draining: bool,
    nodes: int,
    joined: bool | None,
    source: tuple[bool, str],
    problems: list[str],
) -> None:
    got = readiness_problems(
        serving=serving, draining=draining, node_count=nodes, joined=joined, source=source
    )
    assert got == problems
