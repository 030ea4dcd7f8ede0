"""Frames in, batches out: records, accumulators, the memory budget and the sink writers.

``accept`` is synchronous and cheap (called from ``data_received``): it serializes the frame's raw
record, its parsed records and, for a frame that did not decode, an error record; runs the
notification rules (``parser.rules.evaluate_frame``, shared with replay) and hands notifications
to their targets at once; charges the sizes to the memory budget; adds the records to the stream
accumulators (notifications to a linger-free stream of their own, never behind a batch); and
arranges the device's reply under the listener's ACK policy. One writer task per stream takes
ready batches and writes them to the journal: a write starts as soon as the previous one finished
and covers whatever arrived meanwhile (group commit, no linger on the ACK path). A failed write is
retried with capped, jittered backoff and its frames stay un-ACKed meanwhile.

ACK policies: a ticket is settled once its records are journaled (``journaled``), or, for frames
of a ``delivered`` listener (``Ticket.remote``), once the shippers of every stream with a remote
target passed them (``shipped``); the records of a journaled batch wait for that in the order
they are in the journal, so one offset per stream releases them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from gateway.common.backoff import Backoff
from gateway.common.sink import Sink, SinkError
from gateway.common.stats import SinkStats
from gateway.common.tasks import exit_if_died
from gateway.common.tickets import BatchSettled, Ticket
from gateway.pipeline.accumulator import Accumulator, Batch
from gateway.pipeline.flow_control import FlowControl
from gateway.pipeline.settings import AccumulatorSettings, PipelineSettings
from parser.events import Frame, Login
from parser.kpl import MAX_PARTITION_KEY_CHARS
from parser.records import (
    ERROR_SCHEMA,
    RAW_SCHEMA,
    ErrorRecord,
    RawRecord,
    iso_ms,
    raw_record_id,
    to_json,
)
from parser.rules import evaluate_frame

if TYPE_CHECKING:
    from gateway.notify.service import Notifications

log = structlog.get_logger("gateway.pipeline.accept")

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0
# Notifications go to the local journal, group-committed like every local stream (see
# ``Pipeline.__init__``): a fault waits for at most one fsync before its own.
NOTIFICATIONS_MAX_RECORDS = 500
NOTIFICATIONS_MAX_BYTES = 1024 * 1024


class FrameSource(msgspec.Struct, frozen=True, gc=False):
    """Where a frame came from, fixed per connection; ``delivered``: its listener's ACK policy
    waits for the remote targets."""

    codec: str
    transport: str
    peer: str | None
    delivered: bool = False


class _Shipping:
    """A journaled batch whose records wait for the shippers: ``index`` is the first record
    not yet passed, at offset ``offset``."""

    __slots__ = ("batch", "index", "offset")

    def __init__(self, batch: Batch, offset: int) -> None:
        self.batch = batch
        self.index = 0
        self.offset = offset


class Pipeline:
    def __init__(
        self,
        settings: PipelineSettings,
        sinks: dict[str, Sink],
        flow: FlowControl,
        sink_stats: dict[str, SinkStats],
        notifications: Notifications | None = None,
        *,
        shipped_streams: frozenset[str] = frozenset(),
        journal_end: Callable[[str], int] = lambda stream: 0,
    ) -> None:
        """``shipped_streams``: the streams a remote target ships from the journal, whose
        ``journal_end`` (the offset after its last batch written) places each batch."""
        self._sinks = sinks
        self._shipped_streams = shipped_streams
        self._journal_end = journal_end
        self._shipping: dict[str, deque[_Shipping]] = {s: deque() for s in shipped_streams}
        self._flow = flow
        self._stats = sink_stats
        self._clock = time.monotonic

        def accumulator(s: AccumulatorSettings) -> Accumulator:
            return Accumulator(s.max_records, s.max_bytes)

        self._acc = {
            "raw": accumulator(settings.raw),
            "parsed": accumulator(settings.parsed),
            "errors": accumulator(settings.raw),
        }
        self._notify = notifications
        if notifications is not None:
            self._acc["notifications"] = Accumulator(
                NOTIFICATIONS_MAX_RECORDS, NOTIFICATIONS_MAX_BYTES
            )
        self._encode_notification = msgspec.json.Encoder().encode
        self._wake = {stream: asyncio.Event() for stream in self._acc}
        self._tasks: list[asyncio.Task[None]] = []
        self._flushing = False
        self._idle = asyncio.Event()
        self.unwritten_bytes = 0
        self._batch_settled: list[BatchSettled] = []
        self._failing_since: dict[str, float] = {}  # stream -> first failure of its current write
        self._received_ms = -1
        self._received_at = ""

    def on_batch_settled(self, observer: BatchSettled) -> None:
        """Tell ``observer`` each time a written batch's tickets are settled (a port's replies
        then leave in one write per connection, not one per frame)."""
        self._batch_settled.append(observer)

    def start(self) -> None:
        for stream in self._acc:
            task = asyncio.create_task(self._writer(stream), name=f"sink-writer-{stream}")
            task.add_done_callback(exit_if_died("sink writer"))
            self._tasks.append(task)

    def accept(
        self,
        source: FrameSource,
        event: Frame | Login,
        ticket: Ticket[Any] | None,
    ) -> int:
        """Take one frame's records; ``ticket`` is settled once all of them are written (or one
        is lost), and with them those of every frame sharing it.

        Returns the number of parsed records. ``ticket=None`` means nobody waits for the write
        (ACK policy ``accepted``, or a frame that owes no reply). The frame's arrival, for the
        notification latency, is now: ``data_received`` calls this synchronously.
        """
        now = self._clock()
        now_ms = time.time_ns() // 1_000_000
        if now_ms != self._received_ms:  # frames arrive many per millisecond under load
            self._received_ms, self._received_at = now_ms, iso_ms(now_ms)
        received_at = self._received_at
        raw = RawRecord(
            RAW_SCHEMA,
            raw_record_id(event.device_id, source.codec, event.payload),
            event.device_id,
            source.codec,
            source.transport,
            source.peer,
            received_at,
            event.payload,
        )
        notify = self._notify
        # The rules run on the received-at clock, not the monotonic one: replay and parse only
        # have that, and hold times and reminders must come out the same there.
        parsed, notes = evaluate_frame(
            None if notify is None else notify.engine, raw, event.readings, now_ms / 1000, now_ms
        )
        error = None
        if isinstance(event, Frame) and event.error_code is not None:
            error = ErrorRecord(
                ERROR_SCHEMA,
                raw.id,
                event.device_id,
                source.codec,
                event.error_code,
                event.error_detail,
                received_at,
                event.payload,
            )
        if ticket is not None:
            # A frame's notifications are one part: done once all are in notifications/. Added,
            # not set: the frames of one read may share a ticket (all accepted before any of
            # their records can be written: the writers run only once the read is handled).
            ticket.pending += 1 + len(parsed) + (error is not None) + bool(notes)
            ticket.remote = source.delivered
        # Partition key = device id: a device's records keep their order within a shard.
        key = (event.device_id or source.peer or "unknown")[:MAX_PARTITION_KEY_CHARS]
        add = self._add
        size = add("raw", to_json(raw), key, ticket)
        for record in parsed:
            size += add("parsed", to_json(record), key, ticket)
        if error is not None:
            size += add("errors", _error_json(error), key, ticket)
        if notes:
            assert notify is not None
            bodies = [self._encode_notification(n) for n in notes]
            written = notify.dispatcher.submit(notes, bodies, now, ticket)
            for body in bodies:
                size += add("notifications", body, key, written)
        self.unwritten_bytes += size
        self._flow.consumed(size)
        return len(parsed)

    def _add(self, stream: str, record: bytes, key: str, ticket: Ticket[Any] | None) -> int:
        """Queue one record; returns the bytes charged to the budget."""
        if self._acc[stream].add(record, key, ticket):
            self._wake[stream].set()
        return len(record) + 1

    async def _writer(self, stream: str) -> None:
        acc = self._acc[stream]
        wake = self._wake[stream]
        # One per writer, reset after each write: a Backoff makes a random.Random seeded from
        # os.urandom, which per batch cost ~1.5 % of the gateway's CPU under a flood.
        backoff = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
        while True:
            batch = acc.take()
            if batch is None:
                await wake.wait()
                wake.clear()
                continue
            await self._write(stream, batch, backoff)
            backoff.reset()

    async def _write(self, stream: str, batch: Batch, backoff: Backoff) -> None:
        stats = self._stats[stream]
        while True:
            started = self._clock()
            try:
                lost = await self._sinks[stream].write(stream, batch.records, batch.keys)
                break
            except SinkError as exc:
                stats.errors += 1
                delay = backoff.next_delay_s()
                self._failing_since.setdefault(stream, self._clock())
                log.warning(
                    "sink write failed; retrying",
                    stream=stream,
                    error=str(exc),
                    records=len(batch.records),
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
        self._failing_since.pop(stream, None)
        stats.write_latency.observe(self._clock() - started)
        stats.batches += 1
        stats.records += len(batch.records)
        stats.bytes += batch.size_bytes
        self.unwritten_bytes -= batch.size_bytes
        self._flow.released(batch.size_bytes)
        for index in lost:
            ticket = batch.tickets[index]
            if ticket is not None:
                ticket.part_lost()
        stats.dead_letters += len(lost)
        shipped = stream in self._shipped_streams
        waiting = False
        for ticket in batch.tickets:
            if ticket is not None:
                if shipped and ticket.remote:
                    waiting = True
                else:
                    ticket.part_done()
        if waiting:
            start = self._journal_end(stream) - batch.size_bytes
            self._shipping[stream].append(_Shipping(batch, start))
        for observer in self._batch_settled:
            observer.batch_settled()
        if self._flushing and self.unwritten_bytes == 0:
            self._idle.set()

    def shipped(self, stream: str, offset: int, lost: list[int]) -> None:
        """Every remote target of ``stream`` passed ``offset``; the records at the offsets
        ``lost`` were dead-lettered on the way: their frames are lost (never ACKed)."""
        queue = self._shipping.get(stream)
        if not queue:
            return
        gone = set(lost)
        while queue:
            waiting = queue[0]
            records, tickets = waiting.batch.records, waiting.batch.tickets
            index, at = waiting.index, waiting.offset
            while index < len(records) and at < offset:
                ticket = tickets[index]
                if ticket is not None and ticket.remote:
                    if at in gone:
                        ticket.part_lost()
                    ticket.part_done()
                at += len(records[index]) + 1
                index += 1
            waiting.index, waiting.offset = index, at
            if index < len(records):
                break
            queue.popleft()
        for observer in self._batch_settled:
            observer.batch_settled()

    def failing_for_s(self) -> float:
        """How long the longest-failing stream write has been failing (0: none is)."""
        if not self._failing_since:
            return 0.0
        return self._clock() - min(self._failing_since.values())

    async def flush(self) -> None:
        """Returns once everything accepted so far is written."""
        self._flushing = True
        if self.unwritten_bytes:
            self._idle.clear()
            await self._idle.wait()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


_error_json = msgspec.json.Encoder().encode
