"""The journal: one series of segments per stream, written on its own thread, group-committed.

Streams ``raw/``, ``parsed/``, ``errors/`` and ``notifications/`` under the data directory, each
a series of JSON-lines segments (gateway/journal/segments.py) that ``gateway replay``, ``gateway
lake`` and ordinary tools read as they are. Each writer of a data directory has its own series,
named by its tag: none for ``gateway run``, ``w<i>`` for worker ``i`` of ``--workers N``, the
tool's name for replay and parse; a lock file keeps two processes off one series. A batch counts
as written once ``write`` returns: with ``fsync = "batch"`` it is on stable storage, which is what
the ``journaled`` ACK policy promises. A failed write is rolled back to the last whole line, so a
retry neither duplicates nor tears one; a full disk fails every batch until space returns, and
the pipeline retries meanwhile (its budgets then pause the readers).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.common.disk import make_dirs
from gateway.common.sink import SinkError
from gateway.journal.segments import SegmentWriter
from gateway.journal.settings import LocalSinkSettings

STREAMS = ("raw", "parsed", "errors", "notifications")


def series_prefix(stream: str, tag: str | None) -> str:
    """The file-name prefix of ``stream``'s segments written by the writer ``tag``."""
    return stream if tag is None else f"{stream}-{tag}"


class Journal:
    """``await write(stream, records)`` returns once they are journaled; ``end(stream)`` is the
    offset after the last batch written."""

    def __init__(self, settings: LocalSinkSettings, tag: str | None = None) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.tag = tag
        self._writers = {
            s: SegmentWriter(settings.data_dir / s, series_prefix(s, tag), settings)
            for s in STREAMS
        }
        # One thread per stream keeps each stream's batches in order without blocking the loop.
        self._threads = {
            s: ThreadPoolExecutor(1, thread_name_prefix=f"journal-{s}") for s in STREAMS
        }
        self._lock: int | None = None
        self._watchers: dict[str, list[asyncio.Event]] = {s: [] for s in STREAMS}
        self._times = {s: WriteTimes() for s in STREAMS}
        self.records_written = dict.fromkeys(STREAMS, 0)  # since this process opened it

    def open(self) -> None:
        """Lock the series, create the stream directories and cut torn tails, so that a bad
        data directory fails at start-up. Raises ``SinkError``."""
        durable = self.settings.fsync == "batch"
        try:
            make_dirs(self.data_dir, durable=durable)
            self._lock = _lock(self.data_dir / f".journal-{self.tag or 'main'}.lock")
        except OSError as exc:
            raise SinkError(f"cannot use {self.data_dir}: {exc.strerror or exc}") from None
        try:
            for writer in self._writers.values():
                writer.open()
        except SinkError:
            # Not opened, so not to be closed: nothing may keep the series locked.
            os.close(self._lock)
            self._lock = None
            raise

    def end(self, stream: str) -> int:
        return self._writers[stream].end

    def directory(self, stream: str) -> Path:
        return self.data_dir / stream

    def prefix(self, stream: str) -> str:
        return series_prefix(stream, self.tag)

    def current_file(self, stream: str) -> Path | None:
        """The segment ``stream`` writes to now (None before its first write)."""
        return self._writers[stream].path

    async def write(self, record_class: str, records: list[bytes], keys: list[str]) -> list[int]:
        # One copy: ``join(...) + b"\n"`` copies a batch (megabytes at replay's rates) twice.
        data = b"\n".join([*records, b""])
        loop = asyncio.get_running_loop()
        thread, writer = self._threads[record_class], self._writers[record_class]
        await loop.run_in_executor(thread, writer.write, data)
        self.records_written[record_class] += len(records)
        self._times[record_class].wrote(writer.end, time.monotonic())
        for event in self._watchers[record_class]:
            event.set()
        return []

    def watch(self, stream: str) -> asyncio.Event:
        """An event set after each batch written to ``stream`` (a shipper waits on it)."""
        event = asyncio.Event()
        self._watchers[stream].append(event)
        return event

    def written_at(self, stream: str, offset: int) -> float | None:
        """When (monotonic, to the second) the record at ``offset`` was journaled by this
        process; None for one journaled before it started (or past the end)."""
        return self._times[stream].at(offset)

    def forget_before(self, stream: str, offset: int) -> None:
        """Every reader passed ``offset``: its write times are no longer asked for."""
        self._times[stream].forget_before(offset)

    def close(self, *, wait: bool = True) -> None:
        """Close the files; ``wait=False`` abandons writes still hanging on a stuck disk."""
        for stream, thread in self._threads.items():
            self._writers[stream].closing = True
            thread.shutdown(wait=wait, cancel_futures=not wait)
            if wait:
                self._writers[stream].close()
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None


class WriteTimes:
    """When each stretch of a stream was journaled, one entry per second at most (a ten-minute
    backlog is 600 entries): the age of a shipper's oldest unshipped record."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: deque[tuple[int, float]] = deque()  # (end offset, first write's time)

    def wrote(self, end: int, now: float) -> None:
        entries = self._entries
        if entries and now - entries[-1][1] < 1.0:
            entries[-1] = (end, entries[-1][1])
        else:
            entries.append((end, now))

    def at(self, offset: int) -> float | None:
        # Asked on the metrics thread too (gateway_shipper_oldest_unshipped_seconds): walking a
        # deque the loop changes meanwhile raises RuntimeError; tuple() copies it in one C call.
        for end, when in tuple(self._entries):
            if offset < end:
                return when
        return None

    def forget_before(self, offset: int) -> None:
        entries = self._entries
        while entries and entries[0][0] <= offset:
            entries.popleft()


def _lock(path: Path) -> int:
    """Hold an exclusive lock on ``path`` for the process's life; raises ``SinkError`` when
    another process holds it (two writers on one series would interleave their segments)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise SinkError(
            f"{path.parent} is in use by pid {holder} (one process per journal: give each "
            "its own data directory, or run them as --workers)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd
