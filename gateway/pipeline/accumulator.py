"""Batches of encoded records by record count and bytes (pure: no clock, no I/O).

Group commit, as the journal wants it: a batch is due as soon as it holds a record, and what
arrives while the writer is busy with the previous one becomes the next (aiokafka's
``MessageAccumulator`` with a linger of 0; a linger belongs to the shippers, which pay per call).
Nothing refuses an oversize record at the door: a record's size is bounded before it gets here,
by its codec's ``max_frame_bytes`` (an MQTT listener's ``max_packet_bytes``), and one larger than
``max_bytes`` leaves as a batch of its own.
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


class Accumulator:
    __slots__ = ("_current", "_max_bytes", "_max_records", "_ready")

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._current: Batch | None = None
        self._ready: deque[Batch] = deque()

    def add(self, record: bytes, key: str, ticket: Ticket[Any] | None) -> bool:
        """Append one record; True when the writer must look again (a batch opened)."""
        batch = self._current
        size = len(record) + 1  # the newline that ends it in a JSON-lines file
        wake = False
        if batch is not None and batch.records and batch.size_bytes + size > self._max_bytes:
            self._ready.append(batch)
            batch = None
        if batch is None:
            batch = self._current = Batch()
            wake = True
        batch.records.append(record)
        batch.keys.append(key)
        batch.tickets.append(ticket)
        batch.size_bytes += size
        if len(batch.records) >= self._max_records or batch.size_bytes >= self._max_bytes:
            self._ready.append(batch)
            self._current = None
        return wake

    def take(self) -> Batch | None:
        """The next batch to write: a full one, else whatever is open (None: nothing)."""
        if self._ready:
            return self._ready.popleft()
        batch, self._current = self._current, None
        return batch
