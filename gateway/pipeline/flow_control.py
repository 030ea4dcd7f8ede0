"""The budgets of the whole process; pause and resume every reader together.

Memory: bytes are counted when a frame's records are accepted and released when the journal has
written them. Above the high watermark every registered reader pauses
(``transport.pause_reading()``), so devices keep their data as they are built to; below the low
watermark they all resume. The hysteresis keeps readers from flapping on every batch (uvicorn's
``FlowControl``, one level up).
Other budgets (the journal's disk budget) hold the readers paused by name while they are full.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Reader(Protocol):
    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class FlowControl:
    __slots__ = (
        "_clock",
        "_holds",
        "_memory_full",
        "_paused_at",
        "_paused_total_s",
        "_readers",
        "buffered_bytes",
        "high_water_bytes",
        "low_water_bytes",
        "paused",
    )

    def __init__(self, high_water_bytes: int, low_water_bytes: int, clock: Callable[[], float]):
        self.high_water_bytes = high_water_bytes
        self.low_water_bytes = low_water_bytes
        self._clock = clock
        self._readers: set[Reader] = set()
        self.buffered_bytes = 0
        self._memory_full = False
        self._holds: set[str] = set()
        self.paused = False
        self._paused_at = 0.0
        self._paused_total_s = 0.0

    def register(self, reader: Reader) -> None:
        self._readers.add(reader)
        if self.paused:
            reader.pause_reading()

    def unregister(self, reader: Reader) -> None:
        self._readers.discard(reader)

    def consumed(self, size: int) -> None:
        self.buffered_bytes += size
        if not self._memory_full and self.buffered_bytes >= self.high_water_bytes:
            self._memory_full = True
            self._update()

    def released(self, size: int) -> None:
        self.buffered_bytes -= size
        if self._memory_full and self.buffered_bytes <= self.low_water_bytes:
            self._memory_full = False
            self._update()

    def hold(self, budget: str, full: bool) -> None:
        """Budget ``budget`` is full (readers pause) or has room again."""
        if full:
            self._holds.add(budget)
        else:
            self._holds.discard(budget)
        self._update()

    def _update(self) -> None:
        pause = self._memory_full or bool(self._holds)
        if pause == self.paused:
            return
        self.paused = pause
        if pause:
            self._paused_at = self._clock()
            for reader in list(self._readers):
                reader.pause_reading()
        else:
            self._paused_total_s += self._clock() - self._paused_at
            for reader in list(self._readers):
                reader.resume_reading()

    @property
    def paused_seconds(self) -> float:
        """Total time spent paused, including the current pause."""
        current = self._clock() - self._paused_at if self.paused else 0.0
        return self._paused_total_s + current
