"""A sink: write one batch of one record class, say what was lost. The journal is the
pipeline's; the Kinesis sink is a shipper's (and ``gateway replay``'s and ``gateway parse``'s).

A record class (raw, parsed, errors, notifications) is what the metrics call a stream; the
journal keeps each in a directory of that name, the Kinesis sink sends each to its stream.
"""

from __future__ import annotations

from typing import Protocol


class SinkError(Exception):
    """A batch could not be written this time; it stays buffered and is retried whole."""


class Sink(Protocol):
    async def write(self, record_class: str, records: list[bytes], keys: list[str]) -> list[int]:
        """Write the records (``keys`` are their partition keys); return when they are safe.

        Returns the indexes of records given up on for good (dead-lettered with the reason):
        their frames are not acknowledged, so the devices resend them. Raises ``SinkError`` for
        a failure that leaves the whole batch unwritten and worth retrying.
        """
        ...
