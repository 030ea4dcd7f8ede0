"""Reading a series from an offset: whole lines only, below the end the writer confirmed, within
the record and byte limits, across segments, behind a writer that rotates, and the gap left by
removed segments."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

from gateway.common.sink import SinkError
from gateway.journal.reader import Gap, SegmentReader
from gateway.journal.segments import SegmentWriter, segment_name
from gateway.journal.settings import LocalSinkSettings

UNLIMITED = 1 << 30


def lines(first: int, count: int) -> list[bytes]:
    return [b'{"n": %d}' % n for n in range(first, first + count)]


def joined(records: list[bytes]) -> bytes:
    return b"".join(record + b"\n" for record in records)


def make_series(directory: Path, *segments: list[bytes]) -> list[int]:
    """Segments holding ``segments``' records, one after the other; returns their bases."""
    directory.mkdir(exist_ok=True)
    bases, base = [], 0
    for records in segments:
        (directory / segment_name("raw", base)).write_bytes(joined(records))
        bases.append(base)
        base += len(joined(records))
    return bases


def test_whole_lines_from_an_offset_and_the_offset_after_them(tmp_path: Path) -> None:
    records = lines(0, 5)
    make_series(tmp_path, records)
    end = len(joined(records))
    reader = SegmentReader(tmp_path, "raw")
    start = len(joined(records[:2]))
    assert reader.read(start, end, UNLIMITED, 100) == (records[2:], end)
    assert reader.read(end, end, UNLIMITED, 100) == ([], end)


def test_at_most_max_records(tmp_path: Path) -> None:
    records = lines(0, 10)
    make_series(tmp_path, records)
    end = len(joined(records))
    reader = SegmentReader(tmp_path, "raw")
    assert reader.read(0, end, UNLIMITED, 3) == (records[:3], len(joined(records[:3])))
    assert reader.read(len(joined(records[:3])), end, UNLIMITED, 100)[0] == records[3:]


def test_no_more_than_max_bytes_of_whole_lines(tmp_path: Path) -> None:
    records = lines(0, 10)  # 9 bytes each with the newline
    make_series(tmp_path, records)
    end = len(joined(records))
    reader = SegmentReader(tmp_path, "raw")
    assert reader.read(0, end, 9 * 3 + 5, 100) == (records[:3], 27)
    assert reader.read(27, end, 9 * 2, 100) == (records[3:5], 45)


def test_a_single_line_longer_than_max_bytes_comes_whole_and_alone(tmp_path: Path) -> None:
    long = b'{"pad": "%s"}' % (b"x" * 20000)
    records = [long, *lines(0, 100)]
    make_series(tmp_path, records)
    end = len(joined(records))
    reader = SegmentReader(tmp_path, "raw")
    assert reader.read(0, end, 100, 1000) == ([long], len(long) + 1)
    # After a shorter first line, a long one waits for the next batch.
    make_series(tmp_path / "b", [records[1], long])
    reader = SegmentReader(tmp_path / "b", "raw")
    assert reader.read(0, end, 100, 1000) == ([records[1]], len(records[1]) + 1)


def test_never_a_partial_line_below_the_end(tmp_path: Path) -> None:
    # The writer's batch still on its way: the end counts only what it confirmed.
    records = lines(0, 3)
    directory = tmp_path / "raw"
    make_series(directory, records)
    with open(directory / segment_name("raw", 0), "ab") as file:
        file.write(b'{"n": 3}\n{"n": 4')
    reader = SegmentReader(directory, "raw")
    whole = len(joined(records))
    for end in (whole, whole + 5):  # the end inside a line
        assert reader.read(0, end, UNLIMITED, 100) == (records, whole)
        assert reader.read(whole, end, UNLIMITED, 100) == ([], whole)
        assert reader.read(0, end, 1, 100) == (records[:1], 9)  # a line longer than 1 byte


def test_reads_across_segment_boundaries(tmp_path: Path) -> None:
    first, second, third = lines(0, 3), lines(3, 1), lines(4, 5)
    bases = make_series(tmp_path, first, second, third)
    end = bases[2] + len(joined(third))
    reader = SegmentReader(tmp_path, "raw")
    assert reader.read(0, end, UNLIMITED, 100) == (first + second + third, end)
    assert reader.read(bases[1], end, UNLIMITED, 2) == (second + third[:1], bases[2] + 9)
    assert reader.read(9, end, 9 * 4, 100) == (first[1:] + second + third[:1], bases[2] + 9)


@pytest.mark.parametrize("seed", range(20))
def test_any_limits_read_the_series_back_exactly_once_in_order(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    segments, n = [], 0
    for _ in range(rng.randint(1, 5)):
        count = rng.randint(1, 30)
        segments.append(
            [
                b'{"n": %d, "pad": "%s"}' % (i, b"x" * rng.randint(0, 300))
                for i in range(n, n + count)
            ]
        )
        n += count
    bases = make_series(tmp_path, *segments)
    end = bases[-1] + len(joined(segments[-1]))
    reader = SegmentReader(tmp_path, "raw")
    read: list[bytes] = []
    offset = 0
    while offset < end:
        max_bytes, max_records = rng.randint(1, 2000), rng.randint(1, 20)
        records, after = reader.read(offset, end, max_bytes, max_records)
        assert records and after == offset + len(joined(records))
        assert len(records) <= max_records
        assert len(joined(records)) <= max_bytes or len(records) == 1
        read += records
        offset = after
    assert read == [record for segment in segments for record in segment]


def test_a_closed_segment_is_read_only_up_to_the_next_base(tmp_path: Path) -> None:
    # Its rollback failed: the torn tail of a batch never counted stays in the file.
    first, second = lines(0, 2), lines(2, 2)
    bases = make_series(tmp_path, first, second)
    with open(tmp_path / segment_name("raw", 0), "ab") as file:
        file.write(b'{"n": 99}\n{"n": 1')
    end = bases[1] + len(joined(second))
    reader = SegmentReader(tmp_path, "raw")
    assert reader.read(0, end, UNLIMITED, 100) == (first + second, end)
    assert reader.count(0, end) == 4


def test_follows_a_writer_that_rotates_while_reading(tmp_path: Path) -> None:
    settings = LocalSinkSettings(data_dir=tmp_path, rotate_bytes=1024, fsync="never")
    writer = SegmentWriter(tmp_path / "raw", "raw", settings)
    reader = SegmentReader(tmp_path / "raw", "raw")
    read: list[bytes] = []
    offset = 0
    for n in range(0, 400, 20):
        writer.write(joined(lines(n, 20)))  # about 220 bytes: a new segment every 5 batches
        records, offset = reader.read(offset, writer.end, UNLIMITED, 15)
        read += records
    while offset < writer.end:
        records, offset = reader.read(offset, writer.end, 100, 1000)
        read += records
    assert read == lines(0, 400)
    assert len(list((tmp_path / "raw").iterdir())) == 4


def test_follows_a_writer_past_a_segment_it_could_not_roll_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reader listed the old segment as the last one; the writer then left a torn tail in it
    # and went on in a new segment at the valid end: that tail must never be read.
    writer = SegmentWriter(tmp_path / "raw", "raw", LocalSinkSettings(data_dir=tmp_path))
    reader = SegmentReader(tmp_path / "raw", "raw")
    writer.write(joined(lines(0, 3)))
    assert reader.read(0, writer.end, UNLIMITED, 100) == (lines(0, 3), 27)
    real_pwrite = os.pwrite

    def pwrite(fd: int, data: memoryview, offset: int) -> int:
        real_pwrite(fd, data[:14], offset)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def ftruncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with monkeypatch.context() as patch:
        patch.setattr(os, "pwrite", pwrite)
        patch.setattr(os, "ftruncate", ftruncate)
        with pytest.raises(SinkError):
            writer.write(joined(lines(100, 3)))
    writer.write(joined(lines(3, 3)))
    assert reader.read(27, writer.end, UNLIMITED, 100) == (lines(3, 3), writer.end)
    assert reader.count(0, writer.end) == 6


def test_an_offset_before_the_oldest_segment_raises_gap(tmp_path: Path) -> None:
    bases = make_series(tmp_path, lines(0, 2), lines(2, 2), lines(4, 2))
    end = bases[2] + 18
    listed = SegmentReader(tmp_path, "raw")
    assert listed.read(bases[1], end, UNLIMITED, 100)[0] == lines(2, 4)
    for base in bases[:2]:
        (tmp_path / segment_name("raw", base)).unlink()
    for reader in (SegmentReader(tmp_path, "raw"), listed):  # listed before they were removed
        with pytest.raises(Gap) as gap:
            reader.read(0, end, UNLIMITED, 100)
        assert gap.value.resume_at == bases[2]
        assert reader.read(bases[2], end, UNLIMITED, 100) == (lines(4, 2), end)
    # Counting skips what is gone.
    assert SegmentReader(tmp_path, "raw").count(0, end) == 2


def test_bytes_missing_from_a_closed_segment_raise_gap_instead_of_waiting_forever(
    tmp_path: Path,
) -> None:
    first, second = lines(0, 3), lines(3, 2)
    bases = make_series(tmp_path, first, second)
    os.truncate(tmp_path / segment_name("raw", 0), 13)  # one line and 4 bytes of the next
    end = bases[1] + len(joined(second))
    reader = SegmentReader(tmp_path, "raw")
    assert reader.read(0, end, UNLIMITED, 100) == (first[:1], 9)
    with pytest.raises(Gap) as gap:
        reader.read(9, end, UNLIMITED, 100)
    assert gap.value.resume_at == bases[1]
    assert reader.read(bases[1], end, UNLIMITED, 100) == (second, end)
    assert reader.count(0, end) == 3


@pytest.mark.parametrize("torn", [b'{"n": 1', b"\0" * 5000], ids=["cut short", "zeros"])
def test_a_line_that_does_not_end_in_its_closed_segment_raises_gap_to_the_next(
    tmp_path: Path, torn: bytes
) -> None:
    # Never glued to the next segment's first line: a batch is never split between two.
    first, second = lines(0, 1), lines(1, 2)
    (tmp_path / segment_name("raw", 0)).write_bytes(joined(first) + torn)
    base = len(joined(first) + torn)
    (tmp_path / segment_name("raw", base)).write_bytes(joined(second))
    end = base + len(joined(second))
    reader = SegmentReader(tmp_path, "raw")
    assert reader.read(0, end, UNLIMITED, 100) == (first, 9)
    with pytest.raises(Gap) as gap:
        reader.read(9, end, 100, 100)
    assert gap.value.resume_at == base
    assert reader.read(base, end, UNLIMITED, 100) == (second, end)


def test_count_counts_the_lines_between_two_offsets(tmp_path: Path) -> None:
    bases = make_series(tmp_path, lines(0, 4), lines(4, 3))
    end = bases[1] + 27
    reader = SegmentReader(tmp_path, "raw")
    assert reader.count(0, end) == 7
    assert reader.count(18, end) == 5
    assert reader.count(bases[1], bases[1] + 18) == 2
    assert reader.count(end, end) == 0
    assert SegmentReader(tmp_path / "missing", "raw").count(0, 100) == 0
