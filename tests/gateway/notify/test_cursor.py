"""The settled prefix behind a target's cursor, and notifications/ read back from a position."""

from __future__ import annotations

from pathlib import Path

import msgspec

from gateway.notify.cursor import CursorFile, SettledPrefix
from gateway.notify.journal import Journal, Position
from tests.gateway.notify.notes import notification, outgoing


def test_the_cursor_waits_for_the_earliest_unsettled_one() -> None:
    """A partly failed SNS batch settles b before a: the cursor stays put until a settles."""
    prefix = SettledPrefix(Position())
    a, b, c = (outgoing(raw_id=r) for r in "abc")
    for item in (a, b, c):
        item.file = "notifications-20260101T000000Z-7-0001.jsonl"
        prefix.track(item)
    assert not prefix.settle([b])
    assert prefix.position == Position()
    assert prefix.settle([a])
    assert prefix.position == Position(a.file, b.note.id)


def test_the_cursor_file_round_trips_and_a_missing_one_is_empty(tmp_path: Path) -> None:
    cursors = CursorFile(tmp_path / "cursors.json")
    assert cursors.load() == {}
    saved = {"sns": Position("notifications-20260101T000000Z-7-0001.jsonl", "x"), "k": Position()}
    cursors.save(saved)
    assert cursors.load() == saved
    assert [p.name for p in tmp_path.iterdir()] == ["cursors.json"]


def write(directory: Path, name: str, *raw_ids: str, **flags: bool) -> list[str]:
    notes = [msgspec.structs.replace(notification(raw_id=r), **flags) for r in raw_ids]
    with open(directory / name, "ab") as file:
        file.write(b"".join(msgspec.json.encode(n) + b"\n" for n in notes))
    return [n.id for n in notes]


def test_files_are_read_in_the_order_they_were_written(tmp_path: Path) -> None:
    """By base offset, of this series only (a worker's own, not another worker's)."""
    names = [f"notifications-{base:020d}.jsonl" for base in (0, 999, 1000, 10_000)]
    for index, name in enumerate(reversed(names)):
        write(tmp_path, name, str(index))
    write(tmp_path, "notifications-w1-00000000000000000500.jsonl", "other worker")
    (tmp_path / "notes.txt").write_text("not a notifications file")
    assert Journal(tmp_path).files() == names
    assert Journal(tmp_path, "notifications-w1").files() == [
        "notifications-w1-00000000000000000500.jsonl"
    ]


def test_after_a_position_skips_suppressed_and_replayed_ones(tmp_path: Path) -> None:
    first, second = (f"notifications-{base:020d}.jsonl" for base in (0, 4096))
    [a, b] = write(tmp_path, first, "a", "b")
    write(tmp_path, first, "quiet", suppressed=True)
    write(tmp_path, second, "again", replayed=True)
    [c] = write(tmp_path, second, "c")
    journal = Journal(tmp_path)
    files = journal.files()
    after = journal.after(Position(first, a), files)
    assert after is not None and [e.note.id for e in after] == [b, c]
    assert [e.file for e in after] == [first, second]
    everything = journal.after(Position(), files)
    assert everything is not None and [e.note.id for e in everything] == [a, b, c]
    assert journal.after(Position(second, a), files) is None  # before its file: not found
    assert journal.after(Position(first, "gone"), files) is None
    assert journal.end(files) == Position(second, c)
    assert journal.end([]) == Position()
