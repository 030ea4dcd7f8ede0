"""The embedded default sink: rotating JSON-lines files under a data directory.

One directory per stream (``raw/``, ``parsed/``, ``errors/``, ``notifications/``); files rotate by
size and age and are named ``<stream>-<UTC start>-<pid>-<n>.jsonl``, ``n`` the first serial
whose file does not exist yet, so that several processes (and a restart that gets the same pid in
the same second) share the directory without ever writing into each other's files. Each stream
writes on its own thread (file I/O and ``fsync`` never block the event loop) in batch order. A
batch counts as written once ``write`` returns: with ``fsync = "batch"`` it is on stable storage,
which is what the ``delivered`` ACK policy promises. A failed write is rolled back to the last
whole line, so a retry neither duplicates nor tears one; a full disk fails every batch until
space returns, and the pipeline retries meanwhile (its memory budget then pauses the readers).
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from gateway.common.disk import fsync_dir, make_dirs
from gateway.sinks.base import SinkError
from gateway.sinks.settings import LocalSinkSettings

log = structlog.get_logger("gateway.sinks.base")

STREAMS = ("raw", "parsed", "errors", "notifications")


class RotatingFile:
    """The current file of one stream; used from one thread only.

    Written with ``pwrite`` on a raw descriptor at the size it knows, never through a Python
    buffer: with ``open(…, "ab")`` a batch under 8 KiB sat in the buffer, so after a failed flush
    the rollback's ``truncate`` flushed it again and failed, and ``close`` raised past
    ``SinkError`` (issue 13, item 3). ``pwrite`` (not ``write``) also lets fault injection hit
    these files alone: ``write`` is the event loop's and the log's call too.
    """

    def __init__(self, directory: Path, prefix: str, settings: LocalSinkSettings) -> None:
        """Files ``<prefix>-<UTC start>-<pid>-<n>.jsonl`` in ``directory``."""
        self._directory = directory
        self._prefix = prefix
        self._settings = settings
        self._durable = settings.fsync == "batch"
        self._fd: int | None = None
        self._opened_at = 0.0
        self._size = 0  # bytes of whole lines in the file: where the next batch starts
        self._entry_durable = False  # the file's name is in its fsynced directory
        self._serial = 0
        self.path: Path | None = None
        self.closing = False

    def write(self, data: bytes) -> None:
        """Append ``data`` (whole lines); raises ``SinkError`` (and only that) with the file
        ending at its last whole line, so a retry neither duplicates nor tears one."""
        settings = self._settings
        stall = settings.stall_while_exists
        while stall is not None and stall.exists() and not self.closing:
            time.sleep(0.05)
        now = time.time()
        if (
            self._fd is None
            or self._size >= settings.rotate_bytes
            or (now - self._opened_at >= settings.rotate_age_s)
        ):
            self._rotate(now)
        fd = self._fd
        assert fd is not None
        end = self._size
        try:
            if not self._entry_durable:
                # Before the first batch counts as written, or a crash could lose the file.
                fsync_dir(self._directory)
                self._entry_durable = True
            view = memoryview(data)
            while view:  # a full disk can take part of a batch before it refuses the rest
                written = os.pwrite(fd, view, end)
                view = view[written:]
                end += written
            if self._durable:
                os.fsync(fd)
        except OSError as exc:
            self._roll_back(exc)
            raise SinkError(f"{self.path}: {exc.strerror or exc}") from None
        self._size = end

    def _rotate(self, now: float) -> None:
        self.close()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        try:
            make_dirs(self._directory, durable=self._durable)
            while True:
                self._serial += 1
                path = (
                    self._directory
                    / f"{self._prefix}-{stamp}-{os.getpid()}-{self._serial:04d}.jsonl"
                )
                try:
                    # O_EXCL: a name can repeat (a restart with the same pid in the same second,
                    # pid 1 in a container) and the file is another process's ACKed records.
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                except FileExistsError:
                    continue
                break
        except OSError as exc:
            raise SinkError(f"{self._directory}: {exc.strerror or exc}") from None
        self._fd = fd
        self.path = path
        self._opened_at = now
        self._size = 0  # created empty, by this process
        self._entry_durable = not self._durable

    def _roll_back(self, error: OSError) -> None:
        """Cut a partly written batch off so the file ends at the last whole line."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as exc:
            # Cannot repair it: leave it (its torn tail is from a batch nobody was ACKed for)
            # and start a new file, never appending whole lines after a torn one.
            log.error(
                "cannot roll back a failed write; starting a new file",
                file=str(self.path),
                error=exc.strerror or str(exc),
                write_error=error.strerror or str(error),
            )
            self.close()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                # The descriptor is released anyway (close(2)); every batch that counted as
                # written was already fsynced (or promised nothing, with fsync = "never").
                log.warning("error closing a sink file", file=str(self.path), error=exc.strerror)


class LocalSink:
    """Rotating JSON-lines files; ``await write(stream, records)`` returns once they are written."""

    lingers = False  # one fsync per write whatever it holds: group commit (see Sink)

    def __init__(self, settings: LocalSinkSettings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self._files = {s: RotatingFile(settings.data_dir / s, s, settings) for s in STREAMS}
        # One thread per stream keeps each stream's batches in order without blocking the loop.
        self._threads = {s: ThreadPoolExecutor(1, thread_name_prefix=f"sink-{s}") for s in STREAMS}

    def open(self) -> None:
        """Create the stream directories now, so a bad data directory fails at start-up."""
        try:
            for stream in STREAMS:
                make_dirs(self.data_dir / stream, durable=self.settings.fsync == "batch")
        except OSError as exc:
            raise SinkError(f"cannot create {self.data_dir}: {exc.strerror or exc}") from None

    def current_file(self, record_class: str) -> Path | None:
        """The file ``record_class`` writes to now (None before its first write)."""
        return self._files[record_class].path

    async def write(self, record_class: str, records: list[bytes], keys: list[str]) -> list[int]:
        # One copy: ``join(...) + b"\n"`` copies a batch (megabytes at replay's rates) twice.
        data = b"\n".join([*records, b""])
        loop = asyncio.get_running_loop()
        thread, file = self._threads[record_class], self._files[record_class]
        await loop.run_in_executor(thread, file.write, data)
        return []

    def close(self, *, wait: bool = True) -> None:
        """Close the files; ``wait=False`` abandons writes still hanging on a stuck disk."""
        for stream, thread in self._threads.items():
            self._files[stream].closing = True
            thread.shutdown(wait=wait, cancel_futures=not wait)
            if wait:
                self._files[stream].close()
