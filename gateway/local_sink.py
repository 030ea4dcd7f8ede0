"""The embedded default sink: rotating JSON-lines files under a data directory.

One directory per stream (``raw/``, ``parsed/``, ``errors/``, ``notifications/``); files rotate by
size and age and are named ``<stream>-<UTC start>-<pid>-<n>.jsonl`` so that several processes
can share the directory. Each stream writes on its own thread (file I/O and ``fsync`` never block
the event loop) in batch order. A batch counts as written once ``write`` returns: with
``fsync = "batch"`` it is on stable storage, which is what the ``delivered`` ACK policy promises.
A failed write is rolled back to the last whole line, so a retry neither duplicates nor tears one.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from gateway.settings import LocalSinkSettings
from gateway.sink import SinkError

STREAMS = ("raw", "parsed", "errors", "notifications")


class RotatingFile:
    """The current file of one stream; used from that stream's thread only."""

    def __init__(self, directory: Path, stream: str, settings: LocalSinkSettings) -> None:
        self._directory = directory
        self._stream = stream
        self._settings = settings
        self._file: BinaryIO | None = None
        self._opened_at = 0.0
        self._size = 0
        self._serial = 0
        self.path: Path | None = None
        self.closing = False

    def write(self, data: bytes) -> None:
        settings = self._settings
        stall = settings.stall_while_exists
        while stall is not None and stall.exists() and not self.closing:
            time.sleep(0.05)
        now = time.time()
        if (
            self._file is None
            or self._size >= settings.rotate_bytes
            or (now - self._opened_at >= settings.rotate_age_s)
        ):
            self._rotate(now)
        assert self._file is not None
        try:
            self._file.write(data)
            self._file.flush()
            if settings.fsync == "batch":
                os.fsync(self._file.fileno())
        except OSError as exc:
            self._roll_back()
            raise SinkError(f"{self.path}: {exc.strerror or exc}") from None
        self._size += len(data)

    def _rotate(self, now: float) -> None:
        self.close()
        self._serial += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        name = f"{self._stream}-{stamp}-{os.getpid()}-{self._serial:04d}.jsonl"
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            self.path = self._directory / name
            self._file = open(self.path, "ab")  # noqa: SIM115 - lives across many writes
            if self._settings.fsync == "batch":
                # The new directory entry must be durable too, or a crash could lose the file.
                dir_fd = os.open(self._directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            self._file = None
            raise SinkError(f"{self._directory / name}: {exc.strerror or exc}") from None
        self._opened_at = now
        self._size = 0

    def _roll_back(self) -> None:
        """Cut a partly written batch off so the file ends at the last whole line."""
        if self._file is None:
            return
        try:
            self._file.truncate(self._size)
            self._file.seek(self._size)
        except OSError:
            # Cannot repair this file: start a new one on the next write.
            self._file.close()
            self._file = None

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None


class LocalSink:
    """Rotating JSON-lines files; ``await write(stream, records)`` returns once they are written."""

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
                (self.data_dir / stream).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create {self.data_dir}: {exc.strerror or exc}") from None

    def current_file(self, stream: str) -> Path | None:
        """The file ``stream`` writes to now (None before its first write)."""
        return self._files[stream].path

    async def write(self, stream: str, records: list[bytes], keys: list[str]) -> list[int]:
        # One copy: ``join(...) + b"\n"`` copies a batch (megabytes at replay's rates) twice.
        data = b"\n".join([*records, b""])
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads[stream], self._files[stream].write, data)
        return []

    def close(self, *, wait: bool = True) -> None:
        """Close the files; ``wait=False`` abandons writes still hanging on a stuck disk."""
        for stream, thread in self._threads.items():
            self._files[stream].closing = True
            thread.shutdown(wait=wait, cancel_futures=not wait)
            if wait:
                self._files[stream].close()
