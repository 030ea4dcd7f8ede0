"""Batches of encoded records by linger time, record count and bytes (pure: takes a clock).

Like aiokafka's ``MessageAccumulator``: a batch is ready when it is full or when its first
record has waited ``linger``; the sender asks for the next deadline and sleeps until then,
nothing polls. Unlike aiokafka, nothing refuses an oversize record at the door: a record's size
is bounded before it gets here, by its codec's ``max_frame_bytes`` (an MQTT listener's
``max_packet_bytes``), and one larger than ``max_bytes`` leaves as a batch of its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.common.tickets import Ticket


@dataclass(slots=True)
class Batch:
    """Records of one stream, written together.

    ``keys`` (partition keys) and ``tickets`` run parallel to ``records``: each record's ticket
    is told whether that record was written.
    """

    records: list[bytes] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    tickets: list[Ticket[Any] | None] = field(default_factory=list)
    size_bytes: int = 0
    opened_at: float = 0.0


class Accumulator:
    __slots__ = ("_current", "_linger_s", "_max_bytes", "_max_records", "_ready")

    def __init__(self, linger_s: float, max_records: int, max_bytes: int) -> None:
        self._linger_s = linger_s
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._current: Batch | None = None
        self._ready: deque[Batch] = deque()

    def add(self, record: bytes, key: str, ticket: Ticket[Any] | None, now: float) -> bool:
        """Append one record; True when the sender must look again (a batch opened or filled)."""
        batch = self._current
        size = len(record) + 1  # the newline that ends it in a JSON-lines file
        wake = False
        if batch is not None and batch.records and batch.size_bytes + size > self._max_bytes:
            self._ready.append(batch)
            batch = None
        if batch is None:
            batch = self._current = Batch(opened_at=now)
            wake = True  # a new linger deadline
        batch.records.append(record)
        batch.keys.append(key)
        batch.tickets.append(ticket)
        batch.size_bytes += size
        if len(batch.records) >= self._max_records or batch.size_bytes >= self._max_bytes:
            self._ready.append(batch)
            self._current = None
            wake = True
        return wake

    def next_deadline(self) -> float | None:
        """When the open batch must be sent even if not full (None: nothing is waiting)."""
        if self._ready:
            return 0.0
        if self._current is None:
            return None
        return self._current.opened_at + self._linger_s

    def take(self, now: float, *, flush: bool = False) -> Batch | None:
        """The next batch to write: a full one, a lingered one, or (``flush``) whatever is open."""
        if self._ready:
            return self._ready.popleft()
        batch = self._current
        if batch is not None and (flush or now >= batch.opened_at + self._linger_s):
            self._current = None
            return batch
        return None
