"""One MQTT destination fed from its journal series by cursor (the bridge's side of the
journal's shippers, gateway/sinks/shipper.py).

The shipper reads its destination's series (``gateway.bridge.outbox``) in order from its offset,
below the end the outbox confirmed written, and hands each message to the destination's pool,
which publishes it until the endpoint confirms it (PUBACK; a lost connection publishes again).
Confirmations can come back out of order (several connections, each with several in flight):
the offset moves only past the messages confirmed so far *in order* (``InOrder``), so it never
skips one still on its way. At most ``window`` messages are out at once, which bounds the pool's
queue. The offset is saved at most every ``CURSOR_SAVE_S`` and at close; a restart resumes there
and publishes again only what was sent since the last save, under the same message ids. A
destination that is down only makes the lag grow.

Segments every message of which was confirmed are deleted (except the one being written): the
series is an outbox, read by nothing but its shipper.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import structlog

from gateway.bridge.client import PackedProperties, sent_at_ms
from gateway.bridge.outbox import Outbox, decode_message
from gateway.bridge.publisher import DestinationPool, Outgoing
from gateway.bridge.routes import BRIDGED_BY_PROPERTY, MSG_ID_PROPERTY
from gateway.bridge.settings import DestinationSettings
from gateway.bridge.stats import LAG_BUCKETS_S
from gateway.common.stats import Histogram
from gateway.journal.cursor import Cursor, cursor_path
from gateway.journal.reader import Gap, SegmentReader
from gateway.journal.segments import list_segments, passed_segments
from parser.mqtt.packets import Properties as MqttProperties

log = structlog.get_logger("gateway.bridge")

CURSOR_SAVE_S = 1.0
MAX_READ_BYTES = 1024 * 1024
# Messages read ahead per publish slot of the pool: the queue never runs dry between reads.
READ_AHEAD = 2


class InOrder:
    """Messages out at the destination, in journal order; ``offset`` is the end of the last one
    before which every message was confirmed."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self._out: deque[Outgoing] = deque()

    def __len__(self) -> int:
        return len(self._out)

    def oldest(self) -> Outgoing | None:
        try:
            return self._out[0]
        except IndexError:  # none out (asked from the metrics thread: no check-then-index)
            return None

    def add(self, message: Outgoing) -> None:
        self._out.append(message)

    def confirmed(self, message: Outgoing) -> bool:
        """``message`` was confirmed; whether ``offset`` moved."""
        message.done = True
        out = self._out
        moved = False
        while out and out[0].done:
            self.offset = out.popleft().end
            moved = True
        return moved


class BridgeShipper:
    def __init__(
        self,
        settings: DestinationSettings,
        tls: ssl.SSLContext | None,
        backoff_s: tuple[float, float],
        outbox: Outbox,
        data_dir: Path,
        bridge_name: str,
    ) -> None:
        self.name = settings.name
        self.outbox = outbox
        self.pool = DestinationPool(settings, tls, backoff_s, self._confirmed)
        self._bridge_name = bridge_name
        self._reader = SegmentReader(outbox.directory, outbox.prefix)
        self._cursor = Cursor(cursor_path(data_dir, f"bridge-{outbox.prefix}", "mqtt"))
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"bridge-ship-{outbox.prefix}")
        self.window = settings.connections * settings.in_flight_per_connection * READ_AHEAD
        self._out = InOrder(0)
        self._space = asyncio.Event()
        self._drained = asyncio.Event()  # nothing out at the destination
        self._read_at = 0  # the next line to read
        self.shipped = 0
        self.bad_lines = 0
        self.segments_deleted = 0
        self.lag = Histogram(LAG_BUCKETS_S)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def offset(self) -> int:
        """Every message before it was confirmed by the destination."""
        return self._out.offset

    def unshipped_bytes(self) -> int:
        return max(0, self.outbox.end - self._out.offset)

    def oldest_unshipped_s(self) -> float:
        """How long the oldest message out at the destination has waited (0.0: none is)."""
        oldest = self._out.oldest()
        if oldest is None:
            return 0.0
        return max(0.0, time.time() - oldest.origin_ms / 1000)

    def open(self) -> None:
        """The outbox's end (a torn tail cut) and the saved cursor; with none (a new
        destination, or a cursor lost), the oldest segment left: sending again, never
        skipping. Raises ``SinkError`` or ``OSError``."""
        self.outbox.open()
        try:
            saved = self._cursor.load()
        except (OSError, msgspec.DecodeError) as exc:
            log.error(
                "bridge cursor unreadable; shipping from the oldest segment",
                destination=self.name,
                file=str(self._cursor.path),
                error=str(exc),
            )
            saved = None
        if saved is None:
            segments = list_segments(self.outbox.directory, self.outbox.prefix)
            saved = segments[0].base if segments else self.outbox.end
            self._cursor.save(saved)
        elif saved > self.outbox.end:
            # Lines it had passed are gone (fsync = "never" and the machine crashed): whatever
            # is written from the end on is new and must not be skipped.
            log.warning(
                "bridge cursor is past the end of its journal; shipping from the end",
                destination=self.name,
                cursor=saved,
                end=self.outbox.end,
            )
            saved = self.outbox.end
            self._cursor.save(saved)
        self._out = InOrder(saved)
        self._read_at = saved

    def start(self) -> list[asyncio.Task[None]]:
        self._tasks = [
            asyncio.create_task(self._run(), name=f"bridge-ship-{self.name}"),
            asyncio.create_task(self._keep_cursor(), name=f"bridge-cursor-{self.name}"),
        ]
        return [*self._tasks, *self.pool.start()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        written = self.outbox.written
        while True:
            room = self.window - len(self._out)
            if room <= 0:
                self._space.clear()
                await self._space.wait()
                continue
            end = self.outbox.end
            if self._read_at >= end:
                written.clear()
                if self.outbox.end <= self._read_at:
                    await written.wait()
                continue
            try:
                lines, after = await loop.run_in_executor(
                    self._thread, self._reader.read, self._read_at, end, MAX_READ_BYTES, room
                )
            except Gap as gap:
                log.error(
                    "bridge journal segments removed before they were shipped; skipping to "
                    "the oldest left",
                    destination=self.name,
                    from_offset=self._read_at,
                    to_offset=gap.resume_at,
                )
                self._skip(self._read_at, gap.resume_at)
                self._read_at = gap.resume_at
                continue
            offset = self._read_at
            for line in lines:
                message = self._message(line, offset)
                offset += len(line) + 1
                if message is not None:
                    self._out.add(message)
                    self.pool.submit(message)
            self._read_at = after

    def _skip(self, offset: int, end: int) -> None:
        """Nothing to send between ``offset`` and ``end``: passed in its turn."""
        skipped = Outgoing("", b"", 0, None, offset, end)
        self._out.add(skipped)
        self._out.confirmed(skipped)

    def _message(self, line: bytes, offset: int) -> Outgoing | None:
        """The message of the line at ``offset``; None for one that is not (skipped)."""
        end = offset + len(line) + 1
        try:
            journaled = decode_message(line)
        except msgspec.DecodeError as exc:
            # Never expected (whole lines only, written by the outbox): skipped, said loudly.
            self.bad_lines += 1
            log.error(
                "bridge journal line is not a message; skipped",
                destination=self.name,
                offset=offset,
                error=str(exc),
            )
            self._skip(offset, end)
            return None
        properties = None
        if self.pool.v5:
            user = (
                *journaled.user_properties,
                (MSG_ID_PROPERTY, journaled.id),
                (BRIDGED_BY_PROPERTY, self._bridge_name),
            )
            properties = PackedProperties(
                MqttProperties(content_type=journaled.content_type, user_properties=user)
            )
        stamp = sent_at_ms(journaled.user_properties)
        return Outgoing(
            journaled.topic,
            journaled.payload,
            journaled.qos,
            properties,
            offset,
            end,
            journaled.received_ms if stamp is None else stamp,
        )

    def _confirmed(self, message: Outgoing) -> None:
        if message.done:
            return
        self.shipped += 1
        self.lag.observe(max(0.0, time.time() - message.origin_ms / 1000))
        self.outbox.shipped(message.offset)
        self._out.confirmed(message)
        if len(self._out) < self.window:
            self._space.set()
        if not self._out:
            self._drained.set()

    async def _keep_cursor(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CURSOR_SAVE_S)
            await loop.run_in_executor(self._thread, self._save, True)

    def _save(self, trim: bool) -> None:
        """Save the offset if it moved; with ``trim``, delete the segments it passed."""
        offset = self._out.offset
        if self._cursor.keep(offset) and trim:
            self.segments_deleted += self._remove_passed(offset)

    def _remove_passed(self, offset: int) -> int:
        removed = 0
        outbox = self.outbox
        for segment in passed_segments(
            outbox.directory, outbox.prefix, offset, outbox.current_file
        ):
            try:
                segment.path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning(
                    "cannot remove a shipped bridge segment", file=str(segment.path), error=str(exc)
                )
                break
            removed += 1
        return removed

    async def close(self, timeout_s: float) -> None:
        """Stop shipping, wait (up to ``timeout_s``, while the destination is connected) for
        what is out to be confirmed, save the cursor; the rest waits for the next start."""
        run = self._tasks[0] if self._tasks else None
        if run is not None:
            run.cancel()
        if self._out and any(s.connected for s in self.pool.stats):
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), max(0.0, timeout_s))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pool.close()
        await asyncio.get_running_loop().run_in_executor(self._thread, self._save, False)
        self._thread.shutdown(wait=True)
        self._reader.close()
