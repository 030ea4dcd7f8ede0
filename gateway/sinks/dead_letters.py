"""Records given up on, with why: one JSON line each under ``<data_dir>/dead-letters/``.

One shape for both writers: the Kinesis sink (user records a stream would not take, or did not
take within their TTL: files ``dead-letters-*.jsonl``) and the notification dispatcher (a
notification a target never took: ``notifications-*.jsonl``). A line carries the record exactly
as it went to its stream (the pipeline's records are JSON), so an operator can read it and send it
again; its frame was never ACKed, so the device resent it meanwhile.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import msgspec

from gateway.journal.segments import SegmentWriter
from gateway.journal.settings import LocalSinkSettings


class DeadLetter(msgspec.Struct, frozen=True, omit_defaults=True):
    """One record given up on."""

    at: str  # when, UTC, ISO 8601 with milliseconds
    record_class: str = msgspec.field(name="class")  # raw, parsed, notifications
    target: str  # where it was going: kinesis, sns, webhook
    reason: str  # a Kinesis error code (Expired: its TTL ran out), or refused/expired/queue_full
    detail: str
    attempts: int  # deliveries tried
    record: msgspec.Raw  # the record exactly as written to its stream
    stream_name: str | None = None  # the Kinesis stream, for the sink's
    partition_key: str | None = None  # the record's, for the sink's


class DeadLetterFile:
    """Appends dead letters to rotating ``<prefix>-<pid>-*.jsonl`` files, on a thread of its
    own (the pid: workers and tools write dead letters into one directory at once)."""

    def __init__(self, local: LocalSinkSettings, prefix: str) -> None:
        self._file = SegmentWriter(
            local.data_dir / "dead-letters", f"{prefix}-{os.getpid()}", local
        )
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"dead-letters-{prefix}")
        self._encode = msgspec.json.Encoder().encode

    async def write(self, letters: Sequence[DeadLetter]) -> None:
        """Append ``letters``; raises ``SinkError`` (the file rolled back to its last line)."""
        if not letters:
            return
        data = b"\n".join([*map(self._encode, letters), b""])
        await asyncio.get_running_loop().run_in_executor(self._thread, self._file.write, data)

    def close(self) -> None:
        """Wait for the writes under way, then close the file."""
        self._thread.shutdown(wait=True)
        self._file.close()
