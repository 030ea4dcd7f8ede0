"""One remote target fed from one stream's journal by cursor (Kafka's consumer offsets, Vector's
disk-buffer ledger).

The shipper reads the journal in order from its offset, below the end the journal confirmed
written, in batches within the target's limits; hands each batch to the target (the Kinesis sink:
KPL aggregation, shard routing, per-entry retries, rate limits), which returns once every record
is delivered or dead-lettered for good; then advances. The offset is saved at most every
``CURSOR_SAVE_S`` and at close, so a crash ships again only what it sent meanwhile, under the
same record ids. A target that is down only makes the lag grow: retries go on, with backoff,
until it answers or the process stops; nothing is given up on because it took long.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import msgspec
import structlog

from gateway.common.sink import Sink
from gateway.journal.cursor import Cursor, cursor_path
from gateway.journal.reader import Gap, SegmentReader
from gateway.journal.store import Journal
from parser.kpl import MAX_PARTITION_KEY_CHARS

log = structlog.get_logger("gateway.sinks.shipper")

CURSOR_SAVE_S = 1.0
MAX_BATCH_RECORDS = 5000
MAX_BATCH_BYTES = 4 * 1024 * 1024


class _Key(msgspec.Struct):
    """What a record's partition key is made of: the pipeline's device id, else the peer."""

    device_id: str | None = None
    peer: str | None = None


# stream, the offset every record before which the target took (or dead-lettered), and the
# offsets of the records it dead-lettered on the way.
Progress = Callable[[str, int, list[int]], None]


class Shipper:
    def __init__(
        self,
        target: str,
        stream: str,
        journal: Journal,
        sink: Sink,
        progress: Progress,
        clock: Callable[[], float] = time.monotonic,
        *,
        linger_s: float = 0.0,
    ) -> None:
        """``linger_s``: with less than a full batch to send, wait this long from when it was
        first seen for more (fewer, fuller calls to a target that pays per call)."""
        self.target = target
        self.stream = stream
        self.name = f"{stream}.{target}"
        self._journal = journal
        self._sink = sink
        self._progress = progress
        self._clock = clock
        self._linger_s = linger_s
        prefix = journal.prefix(stream)
        self._reader = SegmentReader(journal.directory(stream), prefix)
        self._cursor = Cursor(cursor_path(journal.data_dir, prefix, target))
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"ship-{self.name}")
        self._decode_key = msgspec.json.Decoder(_Key).decode
        self._wake = journal.watch(stream)
        self.offset = 0  # every record before it is shipped
        self.shipped_records = 0
        self.shipped_bytes = 0
        self.dead_letters = 0
        self._backlog_at_open = 0  # records after the cursor when the shipper opened
        self._end_at_open = 0
        self._written_at_open = 0  # the journal's count of records written then
        self._opened_at = clock()

    def open(self) -> None:
        """Where to start: the saved cursor; none yet, the journal's end (a target added later
        is not sent history), saved now, before anything is accepted. Raises ``OSError``."""
        try:
            saved = self._cursor.load()
        except (OSError, msgspec.DecodeError) as exc:
            log.error(
                "cursor unreadable; shipping from the oldest segment",
                shipper=self.name,
                file=str(self._cursor.path),
                error=str(exc),
            )
            saved = 0
        if saved is None:
            saved = self._journal.end(self.stream)
            self._cursor.save(saved)
        self.offset = saved
        self._end_at_open = self._journal.end(self.stream)
        self._written_at_open = self._journal.records_written[self.stream]

    def lag_bytes(self) -> int:
        return max(0, self._journal.end(self.stream) - self.offset)

    def lag_records(self) -> int:
        written_since = self._journal.records_written[self.stream] - self._written_at_open
        written = self._backlog_at_open + written_since
        return max(0, written - self.shipped_records - self.dead_letters)

    def oldest_unshipped_s(self) -> float:
        """How long the oldest record not yet shipped has waited (0: none waits); one from
        before this process started counts from the start."""
        if self.offset >= self._journal.end(self.stream):
            return 0.0
        since = self._journal.written_at(self.stream, self.offset)
        return self._clock() - (self._opened_at if since is None else since)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # Counted here, on the shipper's thread: gigabytes of backlog must not hold the start.
        self._backlog_at_open = await loop.run_in_executor(
            self._thread, self._reader.count, self.offset, self._end_at_open
        )
        wake = self._wake
        last_save = self._clock()
        # When the oldest unsent record was journaled, at the latest (for the linger): first
        # seen after an idle wait, or the start of the call it was journaled during.
        seen_at: float | None = None
        while True:
            end = self._journal.end(self.stream)
            if self.offset >= end:
                seen_at = None
                if self.offset != self._cursor.saved:  # caught up: the cursor says so, now
                    await loop.run_in_executor(self._thread, self._save)
                    last_save = self._clock()
                wake.clear()
                if self._journal.end(self.stream) <= self.offset:
                    await wake.wait()
                continue
            if self._linger_s and end - self.offset < MAX_BATCH_BYTES:
                now = self._clock()
                seen_at = now if seen_at is None else seen_at
                if now < seen_at + self._linger_s:
                    await asyncio.sleep(seen_at + self._linger_s - now)
                    continue
            records, keys, after = await loop.run_in_executor(self._thread, self._read, end)
            if not records:
                await asyncio.sleep(0.05)  # a line not whole yet below the end (never expected)
                continue
            seen_at = self._clock()  # what is journaled from now on waits no longer than this
            lost = await self._sink.write(self.stream, records, keys)
            starts = _starts(self.offset, records)
            self.offset = after
            self.shipped_records += len(records) - len(lost)
            self.shipped_bytes += after - starts[0]
            self.dead_letters += len(lost)
            self._progress(self.stream, after, [starts[i] for i in lost])
            if self._clock() - last_save >= CURSOR_SAVE_S:
                await loop.run_in_executor(self._thread, self._save)
                last_save = self._clock()

    def _read(self, end: int) -> tuple[list[bytes], list[str], int]:
        try:
            records, after = self._reader.read(self.offset, end, MAX_BATCH_BYTES, MAX_BATCH_RECORDS)
        except Gap as gap:
            log.error(
                "journal bytes missing before they were shipped (segments removed or cut); "
                "skipping to the next bytes there are",
                shipper=self.name,
                from_offset=self.offset,
                to_offset=gap.resume_at,
            )
            self.offset = gap.resume_at
            return self._read(end)
        return records, [self._key(record) for record in records], after

    def _key(self, record: bytes) -> str:
        """The record's partition key, as the pipeline chose it: its device id, else its peer
        (a decode of just these fields: ~0.3 µs, as cheap as searching the bytes for them)."""
        try:
            key = self._decode_key(record)
        except msgspec.DecodeError:
            return "unknown"
        return (key.device_id or key.peer or "unknown")[:MAX_PARTITION_KEY_CHARS]

    def _save(self) -> None:
        self._cursor.keep(self.offset)

    async def close(self) -> None:
        """Save the cursor (the task is cancelled first) and release the reader."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._save)
        self._thread.shutdown(wait=True)
        self._reader.close()


def _starts(offset: int, records: list[bytes]) -> list[int]:
    """Each record's offset, from the first's."""
    starts = []
    for record in records:
        starts.append(offset)
        offset += len(record) + 1
    return starts
