"""What the pipeline needs from a sink: write one batch of one record class, say what was lost.

A record class (raw, parsed, errors, notifications) is what the metrics call a stream; the local
sink keeps each in a directory of that name, the Kinesis sink sends each to its Kinesis stream.
"""

from __future__ import annotations

from typing import Protocol


class SinkError(Exception):
    """A batch could not be written this time; it stays buffered and is retried whole."""


class Sink(Protocol):
    # True: a sink that pays per call (Kinesis) lets a batch fill for the accumulator's linger.
    # False: group commit — a write starts as soon as the previous one finished and takes what
    # arrived meanwhile, so an ACK waits for about one fsync, not for a linger.
    lingers: bool

    async def write(self, record_class: str, records: list[bytes], keys: list[str]) -> list[int]:
        """Write the records (``keys`` are their partition keys); return when they are safe.

        Returns the indexes of records given up on for good (dead-lettered with the reason):
        their frames are not acknowledged, so the devices resend them. Raises ``SinkError`` for
        a failure that leaves the whole batch unwritten and worth retrying.
        """
        ...
