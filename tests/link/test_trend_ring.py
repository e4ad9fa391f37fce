"""The dashboard's trend ring: oldest first, the oldest dropped when full, the newest replaceable,
and its memory fixed from the start."""

from __future__ import annotations

import sys

import pytest

from monitord.link.trend_ring import TrendRing


def test_points_come_back_oldest_first_and_the_oldest_go_when_full() -> None:
    ring = TrendRing(3)
    assert not ring and list(ring) == []
    for t in range(1, 6):
        ring.append(float(t), 10.0 * t)
    assert len(ring) == 3
    assert list(ring) == [(3.0, 30.0), (4.0, 40.0), (5.0, 50.0)]
    assert ring.last_time() == 5.0


def test_a_later_reading_in_the_same_bucket_replaces_the_newest_value() -> None:
    ring = TrendRing(2)
    ring.append(1.0, 70.0)
    ring.append(6.0, 72.0)
    ring.append(11.0, 74.0)  # wrapped: the newest is at the start of the arrays
    ring.set_last(90.0)
    assert list(ring) == [(6.0, 72.0), (11.0, 90.0)]


def test_cleared_for_a_new_patient() -> None:
    ring = TrendRing(4)
    ring.append(1.0, 1.0)
    ring.clear()
    assert len(ring) == 0 and list(ring) == []
    with pytest.raises(IndexError):
        ring.last_time()
    ring.append(2.0, 2.0)
    assert list(ring) == [(2.0, 2.0)]


def test_its_memory_is_taken_whole_at_the_start() -> None:
    ring = TrendRing(2880)
    before = sys.getsizeof(ring._t) + sys.getsizeof(ring._v)
    for t in range(5000):
        ring.append(float(t), 1.0)
    assert sys.getsizeof(ring._t) + sys.getsizeof(ring._v) == before <= 1.1 * 2 * 8 * 2880  # 8-byte doubles
