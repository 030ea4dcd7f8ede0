"""One memory budget for the whole process, pausing and resuming every reader together; and
each connection's own reading flags (:class:`ReadFlow`).

Bytes are counted when a frame's records are accepted and released when the sink has written
them. Above the high watermark every registered reader pauses (``transport.pause_reading()``),
so devices keep their data as they are built to; below the low watermark they all resume. The
hysteresis keeps readers from flapping on every batch (uvicorn's ``FlowControl``, one level up).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import msgspec


class Reader(Protocol):
    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class FlowControl:
    __slots__ = (
        "_clock",
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
        if not self.paused and self.buffered_bytes >= self.high_water_bytes:
            self.paused = True
            self._paused_at = self._clock()
            for reader in self._readers:
                reader.pause_reading()

    def released(self, size: int) -> None:
        self.buffered_bytes -= size
        if self.paused and self.buffered_bytes <= self.low_water_bytes:
            self.paused = False
            self._paused_total_s += self._clock() - self._paused_at
            for reader in list(self._readers):
                reader.resume_reading()

    @property
    def paused_seconds(self) -> float:
        """Total time spent paused, including the current pause."""
        current = self._clock() - self._paused_at if self.paused else 0.0
        return self._paused_total_s + current


class ReadFlow(msgspec.Struct, gc=False):
    """Why one connection's socket is not read, as idempotent flags (uvicorn's per-connection
    ``FlowControl``): ``paused`` by the memory budget above, ``held`` by the protocol while it
    waits (an MQTT password check), ``stopped`` at shutdown. Reading resumes once none holds.

    The connection passes its transport in rather than the flags holding it: plain flags need
    no cyclic GC tracking, and this is one more object per connection (40 bytes so).
    """

    paused: bool = False
    held: bool = False
    stopped: bool = False

    def pause(self, transport: asyncio.Transport | None) -> None:
        if not self.paused and transport is not None:
            self.paused = True
            transport.pause_reading()

    def hold(self, transport: asyncio.Transport | None) -> None:
        self.held = True
        if transport is not None and not self.paused:
            transport.pause_reading()

    def stop(self, transport: asyncio.Transport | None) -> None:
        if not self.stopped and transport is not None:
            self.stopped = True
            if not self.paused:
                transport.pause_reading()

    def resume(self, transport: asyncio.Transport | None) -> None:
        """Read the socket again unless something still holds it."""
        if not (self.paused or self.held or self.stopped) and transport is not None:
            transport.resume_reading()
