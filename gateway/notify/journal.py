"""``notifications/`` read back at start: its files in the order they were written, where it ends,
and the notifications after a target's position (what a crash left unsettled).

The journal (gateway/journal/segments.py) names a segment ``<series>-<base offset>.jsonl``: the
segments of one series (this process's, or this worker's) are ordered by their base offsets, and
a restart continues the series in a new segment after the last.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import msgspec
import structlog

from gateway.journal.segments import list_segments
from parser.rules import Notification

log = structlog.get_logger("gateway.notify")


class Position(msgspec.Struct, frozen=True):
    """Just after notification ``id``, which is in ``file`` or a later file. ``id`` None: before
    everything from ``file`` on (None: from the first file)."""

    file: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    file: str
    body: bytes  # the line as written
    note: Notification


def age_s(note: Notification, wall_now: float) -> float:
    """How long ago the gateway detected ``note`` (its ``detected_at``), never negative."""
    return max(0.0, wall_now - datetime.fromisoformat(note.detected_at).timestamp())


class Journal:
    def __init__(self, directory: Path, series: str = "notifications") -> None:
        """The segments ``<series>-*.jsonl`` in ``directory``."""
        self.directory = directory
        self._series = series
        self._decode = msgspec.json.Decoder(Notification).decode

    def files(self) -> list[str]:
        """The file names, oldest first."""
        return [s.path.name for s in list_segments(self.directory, self._series)]

    def end(self, files: list[str]) -> Position:
        """Just after the last notification (the start of the first file when there is none)."""
        for name in reversed(files):
            last = None
            for entry in self._entries(name):
                last = entry
            if last is not None:
                return Position(name, last.note.id)
        return Position()

    def after(self, position: Position, files: list[str]) -> list[Entry] | None:
        """The notifications after ``position`` that are for the targets (not suppressed, not
        replayed); None when its notification is not there (its file was removed)."""
        if position.file is not None:
            if position.file not in files:
                return None
            files = files[files.index(position.file) :]
        found = position.id is None
        entries = []
        for name in files:
            for entry in self._entries(name):
                if found:
                    if not (entry.note.suppressed or entry.note.replayed):
                        entries.append(entry)
                elif entry.note.id == position.id:
                    found = True
        return entries if found else None

    def _entries(self, name: str) -> Iterator[Entry]:
        path = self.directory / name
        try:
            with open(path, "rb") as file:
                for line in file:
                    body = line.rstrip(b"\n")
                    try:
                        note = self._decode(body)
                    except msgspec.DecodeError:
                        # A line torn by a crash mid-write: its frame was never ACKed.
                        log.warning("unreadable notification line skipped", file=str(path))
                        continue
                    yield Entry(name, body, note)
        except FileNotFoundError:  # removed since it was listed
            return
