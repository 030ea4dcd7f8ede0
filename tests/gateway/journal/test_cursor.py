"""A shipper's cursor: none until saved, saved whole, and an unreadable one an error (the shipper
then ships from the oldest segment: again, never skipping)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.journal.cursor import Cursor, cursor_path


def test_the_path_names_the_series_and_the_target(tmp_path: Path) -> None:
    path = cursor_path(tmp_path, "raw-w1", "kinesis")
    assert path == tmp_path / "cursors" / "raw-w1.kinesis.json"


def test_no_cursor_until_one_is_saved(tmp_path: Path) -> None:
    cursor = Cursor(cursor_path(tmp_path, "raw", "kinesis"))
    assert cursor.load() is None  # not even its directory yet
    cursor.save(0)
    assert cursor.load() == 0
    cursor.save(12345678901234)
    assert cursor.load() == 12345678901234
    assert Cursor(cursor.path).load() == 12345678901234  # as the next start reads it


def test_a_save_is_whole_whatever_a_crash_left_beside_it(tmp_path: Path) -> None:
    cursor = Cursor(cursor_path(tmp_path, "raw", "kinesis"))
    cursor.save(100)
    tmp = cursor.path.with_name(cursor.path.name + ".tmp")
    tmp.write_bytes(b'{"offset": 99999999, "and then')  # a save cut short by a crash
    assert cursor.load() == 100
    cursor.save(200)
    assert cursor.load() == 200
    assert sorted(p.name for p in cursor.path.parent.iterdir()) == [cursor.path.name]


@pytest.mark.parametrize(
    "content", [b"", b'{"offset": 1', b'{"offset": "1"}', b'{"at": 1}', b"\0" * 16]
)
def test_an_unreadable_cursor_raises_what_the_shipper_catches(
    tmp_path: Path, content: bytes
) -> None:
    cursor = Cursor(cursor_path(tmp_path, "raw", "kinesis"))
    cursor.path.parent.mkdir()
    cursor.path.write_bytes(content)
    with pytest.raises(msgspec.DecodeError):
        cursor.load()


def test_a_cursor_that_cannot_be_read_raises_oserror(tmp_path: Path) -> None:
    cursor = Cursor(cursor_path(tmp_path, "raw", "kinesis"))
    cursor.path.mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        cursor.load()
