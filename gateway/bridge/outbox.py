"""The journal of one MQTT destination: every message a route sends there, on disk first.

An MQTT route appends each source message to its destination's series (``<data_dir>/bridge/``,
one series per destination and per worker) and the destination's shipper
(``gateway.bridge.shipper``) publishes it from there. The backlog of an outage therefore lives on
the bridge's disk, not in the source's session (Event Grid keeps a session 8 h at most).

One line per message, JSON, the payload in base64 (what msgspec does with ``bytes``): everything
the shipper needs to publish it again after a restart — the destination topic, QoS, the dedup
id, the kept user properties — plus the route (for its lag metric), the retain flag as received
and the wall-clock arrival time.

Group commit (DESIGN.md): a write starts as soon as the previous one finished and covers every
message that arrived meanwhile; no fixed linger. A write that fails (a full disk) is retried with
backoff and its messages stay unacknowledged meanwhile; the bytes not yet written count towards
the process's memory budget, so the sources pause rather than pile them up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import msgspec
import structlog

from gateway.common.backoff import Backoff
from gateway.common.sink import SinkError
from gateway.journal.segments import SegmentWriter
from gateway.journal.settings import LocalSinkSettings
from gateway.pipeline.flow_control import FlowControl

log = structlog.get_logger("gateway.bridge")

# A failed journal write (a full or failing disk) is tried again after this backoff.
WRITE_RETRY_FIRST_S = 0.1
WRITE_RETRY_CAP_S = 5.0


class JournaledMessage(msgspec.Struct, frozen=True):
    """One line of a destination's series."""

    id: str  # the dedup id (``bridge-msg-id``): the same for every copy of a message
    route: str
    topic: str  # on the destination, already mapped
    qos: int
    retain: bool  # as received; the bridge publishes without retain (see ``Outgoing``)
    received_ms: int  # wall clock, milliseconds since the epoch
    payload: bytes
    content_type: str | None = None
    # The source's user properties, less the bridge's own (id and mark are added when sent).
    user_properties: tuple[tuple[str, str], ...] = ()


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(JournaledMessage).decode


def encode_message(message: JournaledMessage) -> bytes:
    """The message as one line (without its newline)."""
    return _encode(message)


def decode_message(line: bytes) -> JournaledMessage:
    """The message of one line; raises ``msgspec.DecodeError`` for one that is not."""
    return _decode(line)


_SEGMENT = re.compile(r"(?P<series>.+)-\d{20}\.jsonl")
_WORKER_TAG = re.compile(r"-w\d+$")


def stranded_series(directory: Path, destinations: set[str]) -> dict[str, int]:
    """The series in ``directory`` that belong to none of ``destinations`` (renamed or removed
    from the settings: nothing ships them), with the bytes their segments hold."""
    stranded: dict[str, int] = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return stranded
    for entry in entries:
        match = _SEGMENT.fullmatch(entry.name)
        if match is None:
            continue
        series = match.group("series")
        if series in destinations or _WORKER_TAG.sub("", series) in destinations:
            continue
        try:
            size = entry.stat().st_size
        except FileNotFoundError:
            continue
        stranded[series] = stranded.get(series, 0) + size
    return stranded


class Acknowledge(Protocol):
    """What the outbox tells once a message is journaled or shipped (a source ``Delivery``)."""

    def delivered(self) -> None: ...


class Outbox:
    """Appends messages to one series; ``end`` is the offset after the last one journaled."""

    def __init__(
        self, directory: Path, prefix: str, settings: LocalSinkSettings, flow: FlowControl
    ) -> None:
        self.directory = directory
        self.prefix = prefix
        self._writer = SegmentWriter(directory, prefix, settings)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"bridge-journal-{prefix}")
        self._flow = flow
        # line, told once it is journaled, told once it is shipped
        self._pending: list[tuple[bytes, Acknowledge | None, Acknowledge | None]] = []
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()  # nothing pending, no write under way
        self._idle.set()
        self.written = asyncio.Event()  # set after each write (the shipper waits on it)
        self._awaiting: dict[int, Acknowledge] = {}  # by line offset: told once shipped
        self.end = 0
        self.messages_written = 0
        self.writes = 0
        self.write_errors = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Messages waiting for a write to start."""
        return len(self._pending)

    @property
    def current_file(self) -> Path | None:
        """The segment being written (None before the first write)."""
        return self._writer.path

    def open(self) -> int:
        """Find the series' end, cutting a torn tail a crash left; raises ``SinkError``."""
        self.end = self._writer.open()
        return self.end

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._run(), name=f"bridge-journal-{self.prefix}")
        return self._task

    def append(
        self, line: bytes, journaled: Acknowledge | None, shipped: Acknowledge | None
    ) -> None:
        """Journal ``line``; ``journaled.delivered()`` once a write covers it,
        ``shipped.delivered()`` once the destination confirmed it (see ``shipped``)."""
        self._pending.append((line, journaled, shipped))
        self._flow.consumed(len(line) + 1)
        self._idle.clear()
        self._arrived.set()

    def shipped(self, offset: int) -> None:
        """The destination confirmed the line at ``offset``."""
        waiting = self._awaiting.pop(offset, None)
        if waiting is not None:
            waiting.delivered()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(WRITE_RETRY_FIRST_S, WRITE_RETRY_CAP_S)
        while True:
            while not self._pending:
                self._idle.set()
                self._arrived.clear()
                await self._arrived.wait()
            batch, self._pending = self._pending, []
            data = b"\n".join([*(line for line, _, _ in batch), b""])
            try:
                await loop.run_in_executor(self._thread, self._writer.write, data)
            except SinkError as exc:
                self.write_errors += 1
                log.error(
                    "bridge journal write failed; retrying",
                    series=self.prefix,
                    messages=len(batch),
                    error=str(exc),
                )
                self._pending[:0] = batch  # first again, in order
                await asyncio.sleep(backoff.next_delay_s())
                continue
            backoff.reset()
            offset = self.end
            for line, _, shipped in batch:
                if shipped is not None:
                    self._awaiting[offset] = shipped
                offset += len(line) + 1
            self._flow.released(offset - self.end)
            self.end = offset
            self.messages_written += len(batch)
            self.writes += 1
            self.written.set()
            for _, journaled, _ in batch:
                if journaled is not None:
                    journaled.delivered()

    async def close(self, timeout_s: float) -> None:
        """Write what is pending (up to ``timeout_s``), then close the series."""
        flushed = True
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, timeout_s))
        except TimeoutError:
            flushed = False
            log.error(
                "bridge messages not journaled by the shutdown deadline",
                series=self.prefix,
                messages=len(self._pending),
            )
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if flushed:
            self._thread.shutdown(wait=True)
            self._writer.close()
        else:
            # A write stuck on a hung disk cannot be cancelled: leave its thread behind.
            self._writer.closing = True
            self._thread.shutdown(wait=False, cancel_futures=True)
