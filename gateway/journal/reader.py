"""Reading a series of segments from an offset: whole lines, up to an end the writer confirmed.

A shipper reads only below the journal's written end, so it never sees a line being written;
a segment's valid bytes end where the next one begins (a torn tail left by a failed write is
skipped). Called on the shipper's thread, never on the event loop.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path

from gateway.journal.segments import segment_bases

_UNBOUNDED = 1 << 62


class Gap(Exception):
    """The bytes at the offset asked for are gone: it is before the oldest segment left
    (removed by hand), or a closed segment lacks them or the end of their line (its file cut
    short by hand, or by a power cut with ``fsync = "never"``). ``resume_at`` is where the
    series goes on."""

    def __init__(self, resume_at: int) -> None:
        super().__init__(resume_at)
        self.resume_at = resume_at


class SegmentReader:
    def __init__(self, directory: Path, prefix: str) -> None:
        self._directory = directory
        self._prefix = prefix
        self._segments: list[tuple[int, Path]] = []  # (base, path), as last listed
        self._fd: int | None = None
        self._fd_base = -1

    def read(
        self, offset: int, end: int, max_bytes: int, max_records: int
    ) -> tuple[list[bytes], int]:
        """The records from ``offset`` (a line's start) below ``end``, at most ``max_records``
        and about ``max_bytes`` (a longer single line comes whole); and the offset after them.
        Raises ``Gap`` when the bytes at ``offset`` are gone."""
        records: list[bytes] = []
        size = 0
        while offset < end and len(records) < max_records and size < max_bytes:
            try:
                data = self._read_at(offset, min(end - offset, max_bytes - size))
            except Gap:
                if records:
                    break  # those first; the next read raises it
                raise
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                # One line longer than what is left of max_bytes: it comes alone, whole, as
                # the batch's first (or waits for the next batch).
                if records:
                    break
                data = self._long_line(offset, end, data)
                cut = len(data)
                if cut == 0:
                    break  # not a whole line below ``end``
            lines = data[:cut].split(b"\n")
            lines.pop()  # the empty string after the last newline
            room = max_records - len(records)
            if len(lines) > room:
                lines = lines[:room]
                cut = sum(len(line) + 1 for line in lines)
            records += lines
            offset += cut
            size += cut
        return records, offset

    def count(self, offset: int, end: int) -> int:
        """How many records lie between ``offset`` and ``end`` (lines counted in 1 MiB reads)."""
        count = 0
        while offset < end:
            try:
                data = self._read_at(offset, min(end - offset, 1 << 20))
            except Gap as gap:
                offset = gap.resume_at
                continue
            if not data:
                break
            count += data.count(b"\n")
            offset += len(data)
        return count

    def _long_line(self, offset: int, end: int, head: bytes) -> bytes:
        """The line at ``offset``, whose first bytes ``head`` hold no newline, with its
        newline; b"" when it does not end below ``end``. Read in doubling steps, so a long
        line costs its own length, not the rest of its segment. Raises ``Gap`` when it does
        not end in its segment, a closed one: a batch never spans two, so its end is gone."""
        located = self._locate(offset, fresh=True)  # listed afresh by the read of ``head``
        stop = end if located is None else min(end, offset + located[2])
        pieces = [head]
        done = len(head)
        step = max(done, 4096)
        while done < stop - offset:
            data = self._read_at(offset + done, min(step, stop - offset - done))
            if not data:
                break
            newline = data.find(b"\n")
            if newline >= 0:
                pieces.append(data[: newline + 1])
                return b"".join(pieces)
            pieces.append(data)
            done += len(data)
            step *= 2
        if stop < end:
            raise Gap(stop)
        return b""

    def _read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``, within the one segment that holds it."""
        for fresh in (False, True):
            if fresh:
                self._segments = segment_bases(self._directory, self._prefix)
            located = self._locate(offset, fresh)
            if located is None:
                continue
            base, path, limit = located
            try:
                data = self._pread(base, path, offset, min(size, limit))
            except FileNotFoundError:  # removed since it was listed
                continue
            if data:
                return data
            if fresh and limit < _UNBOUNDED:
                # Without this a shipper would wait forever for bytes that will never come.
                raise Gap(offset + limit)
        return b""

    def _locate(self, offset: int, fresh: bool) -> tuple[int, Path, int] | None:
        """The segment holding ``offset``: its base, path and the bytes left in it from there
        (unbounded for the last one, which may still grow). None when the listing is not
        ``fresh`` and its last segment holds ``offset``: the writer may have moved on to a new
        one since, leaving in this one's file a torn tail that is no part of the series."""
        segments = self._segments
        if not segments:
            return None
        if offset < segments[0][0]:
            raise Gap(segments[0][0])
        i = bisect.bisect_right(segments, offset, key=lambda segment: segment[0]) - 1
        base, path = segments[i]
        if i + 1 < len(segments):
            return base, path, segments[i + 1][0] - offset
        return (base, path, _UNBOUNDED) if fresh else None

    def _pread(self, base: int, path: Path, offset: int, size: int) -> bytes:
        if self._fd_base != base or self._fd is None:
            self.close()
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            self._fd_base = base
        return os.pread(self._fd, size, offset - base)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._fd_base = -1
