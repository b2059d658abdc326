"""The load digest: size bound, what it keeps, and a decoder that only ever raises
RemoteProtocolError."""

from __future__ import annotations

from collections.abc import Sequence

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlb.errors import LocalProtocolError, RemoteProtocolError
from fnlb.payloads.load_digest import (
    BAD_FIELD,
    BAD_SHAPE,
    BAD_VERSION,
    MALFORMED,
    MAX_DIGEST_BYTES,
    MIN_BUDGET_BYTES,
    TOO_LARGE,
    Digest,
    Lump,
    Row,
    decode_digest,
    encode_digest,
    function_total,
    quantise,
)

FunctionRows = list[tuple[str, list[tuple[str, Row]]]]


def node_totals(functions: FunctionRows) -> list[tuple[str, Row]]:
    acc: dict[str, list[int]] = {}
    for _fn, cells in functions:
        for node, (r, i, w, b) in cells:
            a = acc.setdefault(node, [0, 0, 0, 0])
            a[0] += r
            a[1] += i
            a[2] = max(a[2], w)
            a[3] += b
    rows = [(n, (a[0], a[1], a[2], a[3])) for n, a in acc.items()]
    return sorted(rows, key=lambda nr: (-nr[1][0], nr[0]))


def encode(functions: FunctionRows, budget: int, seq: int = 1, stamp_ms: int = 0) -> bytes:
    nodes = node_totals(functions)
    totals = (
        sum(r[0] for _n, r in nodes),
        sum(r[1] for _n, r in nodes),
        0,
        sum(r[3] for _n, r in nodes),
    )
    return encode_digest(
        epoch=7,
        seq=seq,
        functions=functions,
        nodes=nodes,
        totals=totals,
        function_count=len(functions),
        budget=budget,
        stamp_ms=stamp_ms,
    )


def synthetic(n_functions: int, n_nodes: int, width: int = 3) -> FunctionRows:
    """Functions hottest first (rate falls with rank), each on `width` nodes."""
    out: FunctionRows = []
    for k in range(n_functions):
        rate_c = max(1, 1_000_000 // (k + 1))
        cells = [
            (
                f"10.0.{(k + j) % n_nodes // 250}.{(k + j) % n_nodes % 250}:8080",
                (rate_c, k % 5, 12, 0),
            )
            for j in range(width)
        ]
        out.append((f"r/app{k % 97}/route-{k}", cells))
    return out


def test_round_trip_keeps_every_figure_when_it_fits() -> None:
    functions: FunctionRows = [
        ("r/a/hot", [("n1:8080", (12345, 3, 250, 100)), ("n2:8080", (5000, 1, 40, 0))]),
        ("fn-01ARZ3", [("n2:8080", (10, 0, 5, 0))]),
    ]
    d = decode_digest(encode(functions, 1000, seq=42, stamp_ms=1_800_000_000_123))
    assert (d.epoch, d.seq, d.order, d.stamp_ms) == (7, 42, (7, 42), 1_800_000_000_123)
    assert d.functions == {
        "r/a/hot": {"n1:8080": (12345, 3, 250, 100), "n2:8080": (5000, 1, 40, 0)},
        "fn-01ARZ3": {"n2:8080": (10, 0, 5, 0)},
    }
    assert d.nodes == {"n1:8080": (12345, 3, 250, 100), "n2:8080": (5010, 1, 40, 0)}
    assert d.rest == Lump(0, 0, 0, 0)
    assert d.other_nodes == Lump(0, 0, 0, 0)


def listed_in_rank_order(d: Digest, functions: FunctionRows) -> list[str]:
    return [fn for fn, _c in functions if fn in d.functions or fn in d.totals]


@pytest.mark.parametrize("budget", [MIN_BUDGET_BYTES, 300, 1000, 1300, 64 * 1024])
def test_ten_thousand_functions_fit_any_budget_hottest_first_rest_lumped(budget: int) -> None:
    functions = synthetic(10_000, 200)
    data = encode(functions, budget)
    assert len(data) <= budget
    d = decode_digest(data)
    listed = listed_in_rank_order(d, functions)
    # the hottest are the ones listed: per node first, then by their totals
    ranked = [fn for fn, _c in functions]
    assert list(d.functions) == ranked[: len(d.functions)]
    sure = max(0, len(listed) - 4)  # near the end a shorter entry may pass a longer one
    assert set(listed[:sure]) == set(ranked[:sure])
    for fn, cells in functions[: len(d.functions)]:
        assert d.functions[fn] == dict(cells)
    for fn, cells in functions:
        if fn in d.totals:
            assert d.totals[fn] == function_total(cells)
    if budget >= 1000:
        assert len(d.functions) >= 4
        assert len(listed) >= 20
    if budget >= 64 * 1024:
        assert len(d.functions) >= 500
    # lumps make the totals whole
    all_rate = sum(r[0] for _fn, cells in functions for _n, r in cells)
    listed_rate = sum(r[0] for cells in d.functions.values() for r in cells.values())
    listed_rate += sum(r[0] for r in d.totals.values())
    assert listed_rate + d.rest.rate_c == all_rate
    assert d.rest.count == 10_000 - len(listed)
    node_rate = sum(r[0] for r in d.nodes.values()) + d.other_nodes.rate_c
    assert node_rate == all_rate
    assert len(d.nodes) + d.other_nodes.count == 200


def test_a_function_too_wide_to_list_per_node_is_listed_by_its_totals() -> None:
    wide = (
        "r/a/wide",
        [(f"node-{j:03d}.example.internal:8080", (900, 1, 1, 0)) for j in range(80)],
    )
    small = [(f"r/a/s{k}", [("n1:8080", (100 - k, 0, 1, 0))]) for k in range(5)]
    d = decode_digest(encode([wide, *small], 1000))
    assert d.totals == {"r/a/wide": (80 * 900, 80, 1, 0)}
    assert list(d.functions) == [fn for fn, _c in small]
    assert d.rest == Lump(0, 0, 0, 0)


def test_function_total_weighs_waits_by_rate() -> None:
    assert function_total([("a", (300, 1, 10, 5)), ("b", (100, 2, 50, 0))]) == (400, 3, 20, 5)
    assert function_total([("a", (0, 1, 10, 0)), ("b", (0, 0, 30, 0))]) == (0, 1, 20, 0)
    assert function_total([]) == (0, 0, 0, 0)


def test_names_the_decoder_would_refuse_are_lumped_not_sent() -> None:
    functions: FunctionRows = [
        ("x" * 2000, [("n1", (500, 0, 0, 0))]),
        ("bad\udcff", [("n1", (400, 0, 0, 0))]),
        ("ok", [("n" * 300, (300, 0, 0, 0))]),  # its node cannot be named: totals only
        ("fine", [("n1", (200, 0, 0, 0))]),
    ]
    d = decode_digest(encode(functions, 4096))
    assert list(d.functions) == ["fine"]
    assert d.totals == {"ok": (300, 0, 0, 0)}
    assert d.rest.count == 2
    assert d.rest.rate_c == 900
    assert "n" * 300 not in d.nodes


def test_a_budget_below_the_minimum_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode([], MIN_BUDGET_BYTES - 1)
    with pytest.raises(LocalProtocolError):
        encode_digest(
            epoch=-1, seq=0, functions=[], nodes=[], totals=(0, 0, 0, 0), function_count=0
        )


def test_quantise_rounds_to_wire_units_and_clamps() -> None:
    assert quantise(1.234, 3, 0.0126, 0.5) == (123, 3, 13, 50)
    assert quantise(-1.0, -2, -0.5, float("nan")) == (0, 0, 0, 0)
    assert quantise(float("inf"), 0, float("inf"), 0.0)[0] > 0
    r, i, w, b = quantise(1e300, 10**12, 1e12, 0.0)
    assert decode_digest(encode([("f", [("n", (r, i, w, b))])], 1000)).functions["f"]["n"] == (
        r,
        i,
        w,
        b,
    )


def raw(fields: Sequence[object]) -> bytes:
    out: bytes = msgpack.packb(list(fields), use_bin_type=True)
    return out


LUMP = [0, 0, 0, 0]
N1 = ["n", 1, 2, 3, 4]


def dig(
    nodes: object = (),
    functions: object = (),
    totals: object = (),
    rest: object = LUMP,
    other: object = LUMP,
    head: Sequence[object] = (1, 0, 0, 0),
) -> bytes:
    """A digest's msgpack with any field replaced."""
    fields = [*head, nodes, functions, totals, rest, other]
    return raw([list(f) if isinstance(f, tuple) else f for f in fields])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", MALFORMED),
        (b"\xc1", MALFORMED),
        (b"\x99\x01", MALFORMED),
        (bytes(MAX_DIGEST_BYTES + 1), TOO_LARGE),
        (raw([1, 0, 0, 0, [], [], [], LUMP]), BAD_SHAPE),
        (dig(head=(1, 0, 0)), BAD_SHAPE),
        (dig(head=(2, 0, 0, 0)), BAD_VERSION),
        (dig(head=(True, 0, 0, 0)), BAD_VERSION),
        (dig(head=(1, -1, 0, 0)), BAD_FIELD),
        (dig(head=(1, 0, 1.5, 0)), BAD_FIELD),
        (dig(head=(1, 0, 0, "now")), BAD_FIELD),
        (dig(nodes=["n", 1, 2, 3]), BAD_SHAPE),
        (dig(nodes=["", 1, 2, 3, 4]), BAD_FIELD),
        (dig(nodes=N1 + N1), BAD_FIELD),
        (dig(nodes=["n", 1, 2, 3, -4]), BAD_FIELD),
        (dig(nodes={"n": 1}), MALFORMED),
        (dig(N1, [["f", 1, 1, 1, 1, 1]]), BAD_FIELD),
        (dig(N1, [["f", 0, 1, 1, 1]]), BAD_SHAPE),
        (dig(N1, [["f"]]), BAD_SHAPE),
        (dig(N1, ["f"]), BAD_SHAPE),
        (dig(N1, [[7, 0, 1, 1, 1, 1]]), BAD_FIELD),
        (dig(N1, [["f", 0, 1, 1, 1, 1, 0, 1, 1, 1, 1]]), BAD_FIELD),
        (dig(N1, [["f", 0, 1, 1, 1, 1], ["f", 0, 1, 1, 1, 1]]), BAD_FIELD),
        (dig(totals=["f", 1, 2, 3]), BAD_SHAPE),
        (dig(totals=["f", 1, 2, 3, 4, "f", 1, 2, 3, 4]), BAD_FIELD),
        (dig(N1, [["f", 0, 1, 1, 1, 1]], ["f", 1, 2, 3, 4]), BAD_FIELD),
        (dig(totals=["f", 1, 2, 3.0, 4]), BAD_FIELD),
        (dig(totals="f"), BAD_SHAPE),
        (dig(rest=[0, 0, 0]), BAD_SHAPE),
        (dig(other=[0, 0, 0, 10**15]), BAD_FIELD),
        (msgpack.packb({"v": 1}), MALFORMED),
        (msgpack.packb([1, 0, 0, 0, [], [], [], LUMP, b"\x00"]), MALFORMED),
        (msgpack.packb(msgpack.ExtType(1, b"x")), MALFORMED),
    ],
)
def test_malformed_digests_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_digest(data)
    assert info.value.reason == reason


def check_decode(data: bytes) -> None:
    try:
        d = decode_digest(data)
    except RemoteProtocolError:
        return
    assert isinstance(d, Digest)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_decode_or_raise_remote_protocol_error(data: bytes) -> None:
    check_decode(data)


VALID = encode(synthetic(40, 12), 1000)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6
    ),
    st.integers(0, len(VALID)),
)
def test_mutated_digests_decode_or_raise_remote_protocol_error(
    flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(VALID)
    for at, value in flips:
        data[at] = value
    check_decode(bytes(data))
    check_decode(bytes(data[:cut]))
    check_decode(VALID[:cut] + bytes(data[cut:]) + VALID[:cut])


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.integers(0, 3)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=4)
)
near_rows = st.lists(scalars, max_size=8)


@settings(max_examples=150, deadline=None)
@given(
    scalars,
    scalars,
    near_rows,
    st.lists(near_rows, max_size=4),
    near_rows,
    near_rows,
)
def test_well_formed_msgpack_of_the_wrong_shape_raises_remote_protocol_error(
    epoch: object,
    seq: object,
    nodes: list[object],
    functions: list[list[object]],
    rest: list[object],
    other: list[object],
) -> None:
    check_decode(raw([1, epoch, seq, 0, nodes, functions, nodes, rest, other]))
    check_decode(raw([1, 1, 1, epoch, ["n", 1, 1, 1, 1], functions, ["f", *rest], rest, other]))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=40),
            st.lists(
                st.tuples(
                    st.text(min_size=1, max_size=30),
                    st.tuples(
                        st.integers(0, 10**6),
                        st.integers(0, 50),
                        st.integers(0, 10**5),
                        st.integers(0, 10**4),
                    ),
                ),
                min_size=1,
                max_size=6,
                unique_by=lambda c: c[0],
            ),
        ),
        max_size=60,
        unique_by=lambda f: f[0],
    ),
    st.integers(MIN_BUDGET_BYTES, 3000),
)
def test_any_content_encodes_within_budget_and_decodes_to_what_was_given(
    functions: FunctionRows, budget: int
) -> None:
    data = encode(functions, budget)
    assert len(data) <= budget
    d = decode_digest(data)
    for fn, cells in functions:
        if fn in d.functions:
            assert d.functions[fn] == dict(cells)
        elif fn in d.totals:
            assert d.totals[fn] == function_total(cells)
    assert d.rest.count == len(functions) - len(d.functions) - len(d.totals)


def test_the_encoder_never_lists_more_than_the_decoder_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fnlb.payloads.load_digest as codec

    monkeypatch.setattr(codec, "MAX_FUNCTIONS", 50)
    monkeypatch.setattr(codec, "MAX_NODES", 10)
    d = decode_digest(encode(synthetic(200, 40), 64 * 1024))
    assert len(d.functions) + len(d.totals) == 50
    assert len(d.nodes) == 10
    assert d.totals  # functions whose nodes could not be named any more
