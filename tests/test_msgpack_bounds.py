"""Bounded msgpack decoding (issue #12, clause 7): depth, items and memory on every path.

Memory is measured with tracemalloc, which counts allocations deterministically for a given
input: the bound asserted is the one docs/security.md states, not a timing.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlb import msgpack_bounds
from fnlb.errors import RemoteProtocolError
from fnlb.gossip import codec
from fnlb.payloads import envelope
from fnlb.payloads.backoff import decode_entries
from fnlb.payloads.load_digest import decode_digest

LIMITS = msgpack_bounds.Limits(max_bytes=1 << 20, max_depth=4, max_items=1000, max_array=100)


def reason(data: bytes, limits: msgpack_bounds.Limits = LIMITS) -> str:
    with pytest.raises(RemoteProtocolError) as info:
        msgpack_bounds.unpack(data, limits)
    return info.value.reason


def nested(depth: int) -> bytes:
    return b"\x91" * (depth - 1) + b"\x90"


def test_depth_up_to_the_limit_decodes_and_one_more_is_refused() -> None:
    assert msgpack_bounds.unpack(nested(4), LIMITS) == [[[[]]]]
    assert reason(nested(5)) == "too_deep"
    assert reason(nested(5000)) in ("too_deep", "malformed")  # msgpack's own stack: 1024


def test_depth_counts_maps_and_the_deepest_branch() -> None:
    limits = msgpack_bounds.Limits(
        max_bytes=1 << 20, max_depth=3, max_items=1000, max_array=100, max_map=10, max_str=10
    )
    ok = msgpack.packb([{"a": [1]}, [], 2])
    assert msgpack_bounds.unpack(ok, limits) == [{"a": [1]}, [], 2]
    assert reason(msgpack.packb([[], {"a": [[1]]}]), limits) == "too_deep"


def test_items_are_counted_across_every_container() -> None:
    many = msgpack.packb([[0] * 100] * 11)  # 1100 items, each array under its own cap
    assert reason(many) == "too_many_items"
    assert reason(msgpack.packb([0] * 101)) == "malformed"  # one array over max_array


def test_reasons_carry_the_path_prefix() -> None:
    limits = msgpack_bounds.Limits(
        max_bytes=10, max_depth=2, max_items=10, max_array=10, prefix="x_", malformed="x_bad"
    )
    assert reason(bytes(11), limits) == "x_too_large"
    assert reason(nested(3), limits) == "x_too_deep"
    assert reason(b"\xc1", limits) == "x_bad"


def peak_growth(decode: Callable[[bytes], Any], data: bytes) -> tuple[int, str]:
    """Peak bytes allocated while decoding `data`, and the reason it was refused."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        decode(data)
        outcome = "decoded"
    except RemoteProtocolError as e:
        outcome = e.reason
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak, outcome


def empty_arrays_stream(size: int) -> bytes:
    """The issue's attack: a stream message of nested empty arrays, `size` bytes or so."""
    row = b"\xdc" + (1000).to_bytes(2, "big") + b"\x90" * 1000
    rows = size // len(row)
    return b"\x01" + b"\xdd" + rows.to_bytes(4, "big") + row * rows


def test_a_stream_of_nested_empty_arrays_costs_at_most_twice_its_size_plus_slack() -> None:
    data = empty_arrays_stream(3_800_000)  # 3.8 MB raised a peer's peak by 280 MiB before
    peak, outcome = peak_growth(codec.decode_stream, data)
    assert outcome in (codec.TOO_INFLATED, codec.TOO_MANY_ITEMS)
    assert peak <= 2 * len(data) + (1 << 20) + (512 << 10)  # slack + one open array's list


def test_a_datagram_of_nested_empty_arrays_is_bounded_too() -> None:
    data = b"\x01\xdc\x00\xff" + (b"\xdc\x00\xff" + b"\x90" * 255) * 250
    peak, outcome = peak_growth(codec.decode_compound, data)
    assert outcome in (codec.TOO_INFLATED, codec.TOO_MANY_ITEMS)
    assert peak <= 2 * len(data) + (64 << 10) + (64 << 10)


def test_cluster_state_load_and_backoff_payloads_are_bounded() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        envelope.unpack(nested(50))  # every broadcast and full state is read through it
    assert info.value.reason == "cluster_too_deep"
    with pytest.raises(RemoteProtocolError) as digest:
        decode_digest(nested(10))
    assert digest.value.reason == "load_too_deep"
    with pytest.raises(RemoteProtocolError) as backoff:
        decode_entries(nested(10))
    assert backoff.value.reason == "backoff_too_deep"


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_any_bytes_decode_or_raise_remote_protocol_error(data: bytes) -> None:
    try:
        msgpack_bounds.unpack(data, LIMITS)
    except RemoteProtocolError as e:
        given_reason = e.reason
    else:
        given_reason = "decoded"
    assert given_reason in ("decoded", "malformed", "too_deep", "too_many_items", "too_inflated")
