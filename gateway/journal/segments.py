"""One series of journal segments: JSON-lines files, each named for its first byte's offset.

A series (``raw`` of one worker, say) is a log with byte offsets, as Kafka's partitions are:
segment ``<prefix>-<base>.jsonl`` holds the bytes from offset ``base`` on, 20 digits so that names
sort as numbers, and the next segment starts where its valid bytes end. A shipper's position is
one offset; its lag is the journal's end minus it. A restart continues at the end offset in a new
segment, so a name never repeats and nothing is written into a file another run left.

Written from one thread only, with ``pwrite`` on a raw descriptor at the size it knows, never
through a Python buffer: with ``open(…, "ab")`` a batch under 8 KiB sat in the buffer, so after a
failed flush the rollback's ``truncate`` flushed it again and failed (issue 13, item 3).
``pwrite`` (not ``write``) also lets fault injection hit these files alone: ``write`` is the
event loop's and the log's call too.
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import structlog

from gateway.common.disk import fsync_dir, make_dirs
from gateway.common.sink import SinkError
from gateway.journal.settings import LocalSinkSettings

log = structlog.get_logger("gateway.journal")

_BASE_DIGITS = 20
_CHECK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    base: int  # the offset of its first byte
    size: int  # its valid bytes: whole lines only

    @property
    def end(self) -> int:
        return self.base + self.size


def segment_name(prefix: str, base: int) -> str:
    return f"{prefix}-{base:0{_BASE_DIGITS}d}.jsonl"


def segment_bases(directory: Path, prefix: str) -> list[tuple[int, Path]]:
    """The series' segments as (base, path), oldest first: names only, no ``stat`` of each."""
    pattern = re.compile(re.escape(prefix) + rf"-(\d{{{_BASE_DIGITS}}})\.jsonl")
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):  # not made yet, or something in its way
        return []
    found = []
    for name in names:
        match = pattern.fullmatch(name)
        if match is not None:
            found.append((int(match.group(1)), directory / name))
    found.sort()
    return found


def list_segments(directory: Path, prefix: str) -> list[Segment]:
    """The series' segments, oldest first; each closed one's size ends where the next begins
    (bytes past that are the torn tail of a batch that failed and was never counted)."""
    found: list[tuple[int, Path, int]] = []
    for base, path in segment_bases(directory, prefix):
        try:
            found.append((base, path, path.stat().st_size))
        except FileNotFoundError:  # removed since it was listed
            continue
    segments = []
    for i, (base, path, file_size) in enumerate(found):
        size = min(file_size, found[i + 1][0] - base) if i + 1 < len(found) else file_size
        segments.append(Segment(path, base, size))
    return segments


def passed_segments(
    directory: Path, prefix: str, offset: int, current: Path | None
) -> list[Segment]:
    """The series' segments wholly before ``offset``, oldest first: what readers at ``offset``
    have passed. Never the last one nor ``current``: they may still be written."""
    passed = []
    for segment in list_segments(directory, prefix)[:-1]:
        if segment.end > offset or segment.path == current:
            break
        passed.append(segment)
    return passed


def whole_lines(path: Path, size: int) -> int:
    """How many of the first ``size`` bytes of ``path`` are whole, valid JSON lines.

    What a crash can leave after the last fsynced batch: a line cut short, or lines of zeros
    where the file grew but its pages never reached the disk. Everything from the first line
    that is not a JSON document on its own line is cut: none of it was ever journaled.
    """
    good = 0  # the offset in the file just after the last valid line
    buffer = bytearray()  # the bytes from ``good`` on read so far
    scanned = 0  # of which this many hold no newline
    decode = msgspec.json.decode
    with open(path, "rb") as file:
        while good + len(buffer) < size:
            # In pieces: the last segment, read at every start, is up to rotate_bytes long.
            chunk = file.read(min(_CHECK_BYTES, size - good - len(buffer)))
            if not chunk:
                break
            buffer += chunk
            start = 0
            while (end := buffer.find(b"\n", scanned)) >= 0:
                try:
                    decode(buffer[start:end], type=msgspec.Raw)
                except msgspec.DecodeError:
                    return good + start
                start = scanned = end + 1
            del buffer[:start]
            good += start
            scanned = len(buffer)
    return good


class SegmentWriter:
    """Appends whole lines to a series; ``end`` is the offset after the last batch written.

    ``open`` (or the first write) finds where the series ends: the last segment's torn tail, if
    a crash left one, is cut off before anything else is written.
    """

    def __init__(self, directory: Path, prefix: str, settings: LocalSinkSettings) -> None:
        """Segments ``<prefix>-<base>.jsonl`` in ``directory``."""
        self._directory = directory
        self._prefix = prefix
        self._settings = settings
        self._durable = settings.fsync == "batch"
        self._fd: int | None = None
        self._opened_at = 0.0
        self._base = 0  # the current segment's base offset
        self._size = 0  # bytes of whole lines in it: where the next batch starts
        self._entry_durable = False  # the segment's name is in its fsynced directory
        self._found = False  # the series' end is known
        self._end = 0
        self.path: Path | None = None
        self.closing = False

    @property
    def end(self) -> int:
        """The offset just after the last batch written (read from any thread: one attribute,
        set once a batch is whole, never a sum caught between a rotation's two steps)."""
        return self._end

    def open(self) -> int:
        """Find the series' end, cutting a torn tail; returns the end. Raises ``SinkError``."""
        try:
            make_dirs(self._directory, durable=self._durable)
            if not self._directory.is_dir():
                # list_segments sees no segments there: a data directory this broken must
                # fail the start, not the first write.
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            segments = list_segments(self._directory, self._prefix)
            if segments:
                last = segments[-1]
                size = whole_lines(last.path, last.size)
                if size < last.size or last.path.stat().st_size > last.size:
                    log.warning(
                        "cut the torn tail a crash left in the journal",
                        file=str(last.path),
                        kept_bytes=size,
                        cut_bytes=last.path.stat().st_size - size,
                    )
                    os.truncate(last.path, size)
                    if self._durable:
                        _fsync_file(last.path)
                self._base = last.base + size
        except OSError as exc:
            raise SinkError(f"{self._directory}: {exc.strerror or exc}") from None
        self._size = 0
        self._found = True
        self._end = self._base
        return self._end

    def write(self, data: bytes) -> None:
        """Append ``data`` (whole lines); raises ``SinkError`` (and only that) with the series
        ending at its last whole line, so a retry neither duplicates nor tears one."""
        settings = self._settings
        stall = settings.stall_while_exists
        while stall is not None and stall.exists() and not self.closing:
            time.sleep(0.05)
        if not self._found:
            self.open()
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
        self._end = self._base + end

    def _rotate(self, now: float) -> None:
        self.close()
        base = self._base + self._size
        try:
            make_dirs(self._directory, durable=self._durable)
            path = self._directory / segment_name(self._prefix, base)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                if path == self.path:
                    # This segment's first batch failed and could not be cut off (_roll_back):
                    # it holds no valid byte, so emptying it now is that rollback again.
                    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
                # Otherwise only an empty segment can start where this one ends (one a crash
                # left before its first batch): anything else is another writer on this series.
                elif path.stat().st_size:
                    raise SinkError(f"{path}: written by another process") from None
                else:
                    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise SinkError(f"{self._directory}: {exc.strerror or exc}") from None
        self._fd = fd
        self.path = path
        self._opened_at = now
        self._base = base
        self._size = 0  # created empty, by this process
        self._entry_durable = not self._durable

    def _roll_back(self, error: OSError) -> None:
        """Cut a partly written batch off so the segment ends at the last whole line."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as exc:
            # Cannot repair it: leave it (its torn tail is from a batch nobody was ACKed for,
            # and the next segment's base says where its valid bytes end) and start a new one,
            # never appending whole lines after a torn one.
            log.error(
                "cannot roll back a failed write; starting a new segment",
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
                log.warning("error closing a journal file", file=str(self.path), error=exc.strerror)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
