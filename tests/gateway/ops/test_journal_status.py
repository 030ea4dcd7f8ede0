"""``gateway journal status`` computed from a data directory built with the journal's own writer
and cursors: segments and bytes per series, each target's lag in bytes, records and age."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.bridge.outbox import JournaledMessage
from gateway.journal.cursor import Cursor, cursor_path
from gateway.journal.segments import SegmentWriter, list_segments
from gateway.journal.settings import LocalSinkSettings
from gateway.notify.journal import Position
from gateway.ops.journal_status import SeriesStatus, StatusError, journal_status
from tests.gateway.notify.notes import T0_MS, notification

T0 = T0_MS / 1000  # 2026-01-01T00:00:00Z


def record(seq: int, received_s: float) -> bytes:
    """A raw-record-like line: what the status reads of it is ``received_at``."""
    stamp = f"2026-01-01T00:{int(received_s) // 60:02d}:{int(received_s) % 60:02d}.000Z"
    return msgspec.json.encode({"id": f"r{seq:04d}", "device_id": "d1", "received_at": stamp})


def write_series(
    data_dir: Path, series: str, batches: list[list[bytes]], stream: str | None = None
) -> list[int]:
    """Each batch written by the journal's writer, rotating at its smallest size, into
    ``stream``'s directory (the series' own stream by default); the offset after each batch."""
    settings = LocalSinkSettings(data_dir=data_dir, rotate_bytes=1024, fsync="never")
    writer = SegmentWriter(data_dir / (stream or series.partition("-")[0]), series, settings)
    writer.open()
    ends = []
    for batch in batches:
        writer.write(b"".join(line + b"\n" for line in batch))
        ends.append(writer.end)
    writer.close()
    return ends


def by_series(data_dir: Path, now: float) -> dict[str, SeriesStatus]:
    return {s.series: s for s in journal_status(data_dir, now).series}


def test_a_target_lags_by_the_bytes_records_and_age_after_its_cursor(tmp_path: Path) -> None:
    batches = [[record(b * 10 + i, received_s=b * 60 + i) for i in range(10)] for b in range(5)]
    ends = write_series(tmp_path, "raw", batches)
    Cursor(cursor_path(tmp_path, "raw", "kinesis")).save(ends[1])  # two batches shipped
    status = by_series(tmp_path, now=T0 + 600)["raw"]
    segments = list_segments(tmp_path / "raw", "raw")
    assert len(segments) > 1  # rotated: the lag spans segments
    assert (status.stream, status.segments, status.bytes) == ("raw", len(segments), ends[-1])
    assert (status.start, status.end) == (0, ends[-1])
    [lag] = status.targets
    assert (lag.target, lag.position) == ("kinesis", str(ends[1]))
    assert (lag.lag_bytes, lag.lag_records) == (ends[-1] - ends[1], 30)
    assert lag.oldest_unshipped_s == 600 - 120  # record 20, received at 00:02:00
    assert lag.problem is None and not status.local_only


def test_a_series_without_a_cursor_is_local_only_and_each_worker_has_its_own(
    tmp_path: Path,
) -> None:
    write_series(tmp_path, "errors", [[record(1, 0)]])
    raw_w0 = write_series(tmp_path, "raw-w0", [[record(1, 0), record(2, 1)]])
    raw_w1 = write_series(tmp_path, "raw-w1", [[record(3, 0)]])
    Cursor(cursor_path(tmp_path, "raw-w0", "kinesis")).save(raw_w0[-1])  # all shipped
    Cursor(cursor_path(tmp_path, "raw-w1", "kinesis")).save(0)
    (tmp_path / "notification-cursors.json").write_bytes(b"{}")  # a dispatcher with no targets
    report = journal_status(tmp_path, T0 + 60)
    assert [(s.stream, s.series) for s in report.series] == [
        ("raw", "raw-w0"),
        ("raw", "raw-w1"),
        ("errors", "errors"),
    ]
    w0, w1, errors = report.series
    assert errors.local_only and errors.segments == 1
    assert [(t.lag_bytes, t.lag_records, t.oldest_unshipped_s) for t in w0.targets] == [
        (0, 0, None)
    ]
    assert [(t.lag_bytes, t.lag_records, t.oldest_unshipped_s) for t in w1.targets] == [
        (raw_w1[-1], 1, 60.0)
    ]


def test_segments_removed_before_a_cursor_reached_them_are_reported_and_skipped(
    tmp_path: Path,
) -> None:
    batches = [[record(b * 10 + i, b * 60) for i in range(10)] for b in range(4)]
    ends = write_series(tmp_path, "parsed", batches)
    first = list_segments(tmp_path / "parsed", "parsed")[0]
    first.path.unlink()
    Cursor(cursor_path(tmp_path, "parsed", "kinesis")).save(0)
    status = by_series(tmp_path, T0 + 600)["parsed"]
    [lag] = status.targets
    assert status.start == first.end
    assert lag.lag_bytes == ends[-1] - first.end
    assert lag.problem is not None and "removed unshipped" in lag.problem


def test_an_unreadable_cursor_counts_from_the_oldest_segment(tmp_path: Path) -> None:
    ends = write_series(tmp_path, "raw", [[record(1, 0), record(2, 0)]])
    path = cursor_path(tmp_path, "raw", "kinesis")
    path.parent.mkdir()
    path.write_bytes(b"{torn")
    [lag] = by_series(tmp_path, T0)["raw"].targets
    assert (lag.position, lag.lag_bytes, lag.lag_records) == ("?", ends[-1], 2)
    assert lag.problem is not None and "unreadable" in lag.problem


def test_a_cursor_of_a_series_with_no_segments_left_lags_by_nothing(tmp_path: Path) -> None:
    Cursor(cursor_path(tmp_path, "raw", "kinesis")).save(4096)
    status = by_series(tmp_path, T0)["raw"]
    assert (status.segments, status.bytes) == (0, 0)
    assert [(t.lag_bytes, t.lag_records) for t in status.targets] == [(0, 0)]


def write_notes(directory: Path, name: str, *raw_ids: str, **flags: bool) -> list[bytes]:
    notes = [msgspec.structs.replace(notification(raw_id=r), **flags) for r in raw_ids]
    lines = [msgspec.json.encode(n) for n in notes]
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / name, "ab") as file:
        file.write(b"".join(line + b"\n" for line in lines))
    return lines


def test_notification_targets_lag_by_what_follows_their_position(tmp_path: Path) -> None:
    """Worker 0's dispatcher cursors follow notifications-w0; suppressed notifications are not
    for the targets, so they are not behind."""
    notes = tmp_path / "notifications"
    name = "notifications-w0-00000000000000000000.jsonl"
    [a, b] = write_notes(notes, name, "a", "b")
    write_notes(notes, name, "quiet", suppressed=True)
    [c] = write_notes(notes, name, "c")
    first_id = msgspec.json.decode(a)["id"]
    positions = {"sns": Position(name, first_id), "webhook": Position()}
    (tmp_path / "notification-cursors-0.json").write_bytes(msgspec.json.encode(positions))
    status = by_series(tmp_path, T0 + 90)["notifications-w0"]
    sns, webhook = status.targets
    assert (sns.target, sns.position) == ("sns", f"{name}:{first_id}")
    assert (sns.lag_records, sns.lag_bytes) == (2, len(b) + len(c) + 2)
    assert sns.oldest_unshipped_s == 90.0  # detected at T0
    assert (webhook.lag_records, webhook.lag_bytes) == (3, len(a) + len(b) + len(c) + 3)


def test_a_notification_position_whose_file_is_gone_is_reported(tmp_path: Path) -> None:
    write_notes(tmp_path / "notifications", "notifications-00000000000000004096.jsonl", "a")
    gone = {"sns": Position("notifications-00000000000000000000.jsonl", "x")}
    (tmp_path / "notification-cursors.json").write_bytes(msgspec.json.encode(gone))
    [lag] = by_series(tmp_path, T0)["notifications"].targets
    assert (lag.lag_records, lag.oldest_unshipped_s) == (0, None)
    assert lag.problem is not None and "starts at the end" in lag.problem


def test_a_missing_directory_or_one_without_a_journal_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StatusError, match="not a directory"):
        journal_status(tmp_path / "missing", T0)
    (tmp_path / "other").mkdir()
    with pytest.raises(StatusError, match="no journal here"):
        journal_status(tmp_path / "other", T0)


def test_a_bridge_destination_lags_by_the_messages_after_its_cursor(tmp_path: Path) -> None:
    """bridge/<destination>[-w<i>] with its cursor cursors/bridge-<series>.mqtt.json; a
    destination's name may hold dots."""
    messages = [
        msgspec.json.encode(
            JournaledMessage(f"m{i}", "telemetry", "ev/1", 1, False, T0_MS + i * 1000, b"{}")
        )
        for i in range(3)
    ]
    ends = write_series(tmp_path, "aws.iot-w0", [messages[:1], messages[1:]], stream="bridge")
    Cursor(cursor_path(tmp_path, "bridge-aws.iot-w0", "mqtt")).save(ends[0])
    [status] = journal_status(tmp_path, T0 + 60).series
    assert (status.stream, status.series, status.label) == (
        "bridge",
        "aws.iot-w0",
        "bridge/aws.iot-w0",
    )
    [lag] = status.targets
    assert (lag.target, lag.lag_bytes, lag.lag_records) == ("mqtt", ends[1] - ends[0], 2)
    assert lag.oldest_unshipped_s == 59.0  # m1, received at T0 + 1 s
