"""What the pipeline needs from a sink: write one batch of one stream, say what was lost."""

from __future__ import annotations

from typing import Protocol


class SinkError(Exception):
    """A batch could not be written this time; it stays buffered and is retried whole."""


class Sink(Protocol):
    async def write(self, stream: str, records: list[bytes], keys: list[str]) -> list[int]:
        """Write the records (``keys`` are their partition keys); return when they are safe.

        Returns the indexes of records given up on for good (dead-lettered with the reason):
        their frames are not acknowledged, so the devices resend them. Raises ``SinkError`` for
        a failure that leaves the whole batch unwritten and worth retrying.
        """
        ...
