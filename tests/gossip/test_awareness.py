"""Lifeguard local health awareness: clamped score that stretches our own timeouts."""

from __future__ import annotations

import pytest

from fnlb.gossip.awareness import Awareness


def test_score_is_clamped_and_scales_timeouts() -> None:
    a = Awareness(8)
    assert a.scale(0.5) == pytest.approx(0.5)
    a.apply_delta(3)
    assert a.scale(0.5) == pytest.approx(2.0)
    a.apply_delta(100)
    assert a.score == 7
    a.apply_delta(-100)
    assert a.score == 0
