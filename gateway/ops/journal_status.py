"""What a data directory's journal holds and how far behind each target is, from the files alone
(``gateway journal status``): no running gateway needed, nothing written.

A *series* is one writer's segments of one stream (``raw``, ``raw-w1`` …,
gateway/journal/store.py), or of one bridge MQTT destination (``bridge/<destination>[-w<i>]``,
gateway/bridge/outbox.py). Its targets are the shippers' cursors in ``cursors/``
(``<series>.<target>.json``, an offset; ``bridge-<series>.mqtt.json`` for a destination) and,
for ``notifications``, the dispatcher's ``notification-cursors[-<i>].json`` (a file and
notification id per target). A series no cursor names is local-only: nothing ships it (its
segments are the output).

It lives in ops/ because it reads both kinds of cursor: the journal's and notify/'s. The series'
end is its last segment's size on disk: with the gateway running, a batch being written can
show as a few bytes of lag that hold no whole record yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import msgspec

from gateway.journal.cursor import Cursor
from gateway.journal.reader import Gap, SegmentReader
from gateway.journal.segments import list_segments
from gateway.journal.store import STREAMS
from gateway.notify.journal import Journal as NotificationJournal
from gateway.notify.journal import Position, age_s

_SEGMENT = re.compile(r"(?P<series>.+)-\d{20}\.jsonl")
# Destination names may hold dots; targets do not.
_SHIPPER_CURSOR = re.compile(r"(?P<prefix>.+)\.(?P<target>[^.]+)\.json")
BRIDGE = "bridge"  # the bridge's directory, and its cursors' prefix (gateway/bridge/shipper.py)
_NOTIFICATION_CURSORS = re.compile(r"notification-cursors(?:-(?P<worker>\d+))?\.json")
# A record's first line is read whole to find its time; one longer than this gives no age.
_MAX_RECORD_BYTES = 1 << 20


class StatusError(Exception):
    """The directory is not a data directory that can be read (one line for the user)."""


@dataclass(frozen=True, slots=True)
class TargetLag:
    target: str
    position: str  # the cursor as saved: an offset, or a notification's file and id
    lag_bytes: int
    lag_records: int
    # How long ago the oldest unshipped record was received (notifications: detected); None
    # when nothing waits, or its time cannot be read.
    oldest_unshipped_s: float | None
    problem: str | None = None  # what the shipper will do about a cursor it cannot follow


@dataclass(frozen=True, slots=True)
class SeriesStatus:
    stream: str
    series: str  # the segments' file-name prefix
    segments: int
    bytes: int  # the segments' sizes summed
    start: int  # the offset of the oldest byte left
    end: int
    targets: list[TargetLag] = field(default_factory=list)

    @property
    def local_only(self) -> bool:
        return not self.targets

    @property
    def label(self) -> str:
        """The series as an operator finds it: ``raw-w1``, ``bridge/<destination>``."""
        return f"{BRIDGE}/{self.series}" if self.stream == BRIDGE else self.series


@dataclass(frozen=True, slots=True)
class JournalStatus:
    data_dir: Path
    series: list[SeriesStatus]


class _Times(msgspec.Struct):
    """The one field of a record that says when it arrived."""

    received_at: str | None = None
    detected_at: str | None = None  # notifications
    received_ms: int | None = None  # bridge messages


def journal_status(data_dir: Path, wall_now: float) -> JournalStatus:
    """Every series under ``data_dir`` with its targets' lag, ages against ``wall_now`` (Unix
    seconds). Raises ``StatusError`` for a directory that is missing, holds no journal or cannot
    be read (run it as the gateway's user, or root)."""
    try:
        return _journal_status(data_dir, wall_now)
    except OSError as exc:
        raise StatusError(f"{exc.filename or data_dir}: {exc.strerror or exc}") from None


def _journal_status(data_dir: Path, wall_now: float) -> JournalStatus:
    if not data_dir.is_dir():
        raise StatusError(f"{data_dir}: not a directory")
    if not any((data_dir / name).is_dir() for name in (*STREAMS, "cursors")):
        raise StatusError(f"{data_dir}: no journal here (no {'/, '.join(STREAMS)}/ or cursors/)")
    found = _series_names(data_dir)
    shipper_cursors = _shipper_cursors(data_dir)
    notification_cursors = _notification_cursors(data_dir)
    for stream, series in [*shipper_cursors, *notification_cursors]:
        found.add((stream, series))
    order = {stream: i for i, stream in enumerate((*STREAMS, BRIDGE))}
    report = []
    for stream, series in sorted(found, key=lambda s: (order[s[0]], s[1])):
        directory = data_dir / stream
        status = _series(stream, series, directory)
        for target, path in shipper_cursors.get((stream, series), []):
            status.targets.append(_shipper_lag(status, directory, target, path, wall_now))
        for target, position in notification_cursors.get((stream, series), []):
            status.targets.append(_notification_lag(status, directory, target, position, wall_now))
        report.append(status)
    return JournalStatus(data_dir, report)


def _stream_of(series: str) -> str | None:
    return next((s for s in STREAMS if series == s or series.startswith(s + "-")), None)


def _series_names(data_dir: Path) -> set[tuple[str, str]]:
    found = set()
    for stream in (*STREAMS, BRIDGE):
        directory = data_dir / stream
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            match = _SEGMENT.fullmatch(entry.name)
            if match is not None and stream in (BRIDGE, _stream_of(match["series"])):
                found.add((stream, match["series"]))
    return found


def _shipper_cursors(data_dir: Path) -> dict[tuple[str, str], list[tuple[str, Path]]]:
    """``cursors/<series>.<target>.json`` by (stream, series)."""
    cursors: dict[tuple[str, str], list[tuple[str, Path]]] = {}
    directory = data_dir / "cursors"
    if not directory.is_dir():
        return cursors
    for path in sorted(directory.iterdir()):
        match = _SHIPPER_CURSOR.fullmatch(path.name)
        if match is None:
            continue
        prefix = match["prefix"]
        if prefix.startswith(BRIDGE + "-"):
            key = (BRIDGE, prefix.removeprefix(BRIDGE + "-"))
        else:
            stream = _stream_of(prefix)
            if stream is None:
                continue
            key = (stream, prefix)
        cursors.setdefault(key, []).append((match["target"], path))
    return cursors


def _notification_cursors(
    data_dir: Path,
) -> dict[tuple[str, str], list[tuple[str, Position | str]]]:
    """Each dispatcher's targets and positions (or why they cannot be read), by series: the
    cursors of worker ``i`` follow the series ``notifications-w<i>``."""
    decode = msgspec.json.Decoder(dict[str, Position]).decode
    cursors: dict[tuple[str, str], list[tuple[str, Position | str]]] = {}
    for path in sorted(data_dir.iterdir()):
        match = _NOTIFICATION_CURSORS.fullmatch(path.name)
        if match is None:
            continue
        worker = match["worker"]
        series = "notifications" if worker is None else f"notifications-w{worker}"
        try:
            positions: dict[str, Position | str] = dict(decode(path.read_bytes()))
        except (OSError, msgspec.DecodeError) as exc:
            positions = {"?": f"{path.name} unreadable ({exc}): the dispatcher starts at the end"}
        if positions:  # a dispatcher with no targets saves an empty table
            cursors[("notifications", series)] = sorted(positions.items())
    return cursors


def _series(stream: str, series: str, directory: Path) -> SeriesStatus:
    segments = list_segments(directory, series)
    if not segments:
        return SeriesStatus(stream, series, 0, 0, 0, 0)
    return SeriesStatus(
        stream,
        series,
        segments=len(segments),
        bytes=sum(s.size for s in segments),
        start=segments[0].base,
        end=segments[-1].end,
    )


def _shipper_lag(
    series: SeriesStatus, directory: Path, target: str, path: Path, wall_now: float
) -> TargetLag:
    problem = None
    try:
        offset = Cursor(path).load()
        position = str(offset)
    except (OSError, msgspec.DecodeError) as exc:
        offset, position = None, "?"
        problem = f"cursor unreadable ({exc}): ships again from the oldest segment"
    if offset is None:  # unreadable, or removed since it was listed
        offset = series.start
    elif offset < series.start:
        problem = (
            f"segments before offset {series.start} were removed unshipped: the shipper skips them"
        )
        offset = series.start
    if offset >= series.end:
        return TargetLag(target, position, 0, 0, None, problem)
    reader = SegmentReader(directory, series.series)
    try:
        records = reader.count(offset, series.end)
        oldest = _age_s(_first_record(reader, offset, series.end), wall_now)
    except OSError as exc:
        records, oldest = 0, None
        problem = f"segments unreadable: {exc.strerror or exc}"
    finally:
        reader.close()
    return TargetLag(target, position, series.end - offset, records, oldest, problem)


def _first_record(reader: SegmentReader, offset: int, end: int) -> bytes | None:
    try:
        records, _ = reader.read(offset, end, _MAX_RECORD_BYTES, 1)
    except Gap as gap:  # removed since the series was listed
        records, _ = reader.read(gap.resume_at, end, _MAX_RECORD_BYTES, 1)
    return records[0] if records else None


def _age_s(record: bytes | None, wall_now: float) -> float | None:
    if record is None:
        return None
    try:
        times = msgspec.json.decode(record, type=_Times)
        stamp = times.received_at or times.detected_at
        if stamp is not None:
            at = datetime.fromisoformat(stamp).timestamp()
        elif times.received_ms is not None:
            at = times.received_ms / 1000
        else:
            return None
        return max(0.0, wall_now - at)
    except (msgspec.DecodeError, ValueError):
        return None


def _notification_lag(
    series: SeriesStatus,
    directory: Path,
    target: str,
    position: Position | str,
    wall_now: float,
) -> TargetLag:
    if isinstance(position, str):  # the cursor file could not be read
        return TargetLag(target, "?", 0, 0, None, position)
    shown = f"{position.file or '-'}:{position.id or '-'}"
    journal = NotificationJournal(directory, series.series)
    entries = journal.after(position, journal.files())
    if entries is None:
        problem = "its notification is gone from notifications/: the dispatcher starts at the end"
        return TargetLag(target, shown, 0, 0, None, problem)
    oldest = age_s(entries[0].note, wall_now) if entries else None
    lag_bytes = sum(len(entry.body) + 1 for entry in entries)
    return TargetLag(target, shown, lag_bytes, len(entries), oldest)
