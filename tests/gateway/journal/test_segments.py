"""A series of journal segments: names, a restart, torn tails cut at open, and real faults (a full
disk on a tmpfs filled by a ballast file, a rollback that fails), new directories' durability."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.common.sink import SinkError
from gateway.journal import segments
from gateway.journal.segments import SegmentWriter, list_segments, segment_name, whole_lines
from gateway.journal.settings import LocalSinkSettings
from gateway.journal.store import Journal
from gateway.notify.queue import Outcome, Verdict
from tests.gateway.disks import fill, mounted_tmpfs, torn_lines
from tests.gateway.notify.scripted import (
    ScriptedTarget,
    dead_letters,
    dispatcher,
    submit,
    until,
)

FIRST = b'{"n": 0}\n'
# Over a page (tmpfs allocates whole pages, so the current one's slack takes a smaller batch
# even when the disk is full) and under the 8 KiB that Python's buffered files hold back.
BATCH = b"".join(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * 50) for i in range(1, 90))


def writer(directory: Path, prefix: str = "raw") -> SegmentWriter:
    return SegmentWriter(directory, prefix, LocalSinkSettings(data_dir=directory.parent))


def series(directory: Path, prefix: str = "raw") -> list[tuple[str, int, int]]:
    """The series as (name, base, valid size) per segment."""
    return [(s.path.name, s.base, s.size) for s in list_segments(directory, prefix)]


def test_segment_names_sort_as_their_base_offsets(tmp_path: Path) -> None:
    bases = [0, 9, 10, 100, 2**40, 10**19]
    names = [segment_name("raw", base) for base in reversed(bases)]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert sorted(names) == [segment_name("raw", base) for base in bases]
    assert [s.base for s in list_segments(tmp_path, "raw")] == bases
    assert list_segments(tmp_path / "missing", "raw") == []


def test_a_restart_continues_the_series_in_a_new_segment_never_writing_into_the_old_file(
    tmp_path: Path,
) -> None:
    crashed = writer(tmp_path / "raw")
    assert crashed.open() == 0
    crashed.write(FIRST)  # ACKed, then the process died without closing the file
    restarted = writer(tmp_path / "raw")
    assert restarted.open() == len(FIRST)
    restarted.write(BATCH)
    assert restarted.end == len(FIRST + BATCH)
    assert crashed.path is not None and restarted.path is not None
    assert crashed.path.read_bytes() == FIRST
    assert restarted.path.read_bytes() == BATCH
    assert series(tmp_path / "raw") == [
        (segment_name("raw", 0), 0, len(FIRST)),
        (segment_name("raw", len(FIRST)), len(FIRST), len(BATCH)),
    ]


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b'{"n": 1, "pad": "xx', id="a last line without its newline"),
        pytest.param(b"\0" * 4096, id="a zero-filled tail"),
        pytest.param(
            b"\0" * 100 + b"\n" + b"\0" * 4096 + b'{"n": 1}\n{"n": 2}\n',
            id="zeros followed by valid-looking lines",
        ),
    ],
)
def test_a_torn_tail_is_cut_at_open_and_logged(tmp_path: Path, tail: bytes) -> None:
    crashed = writer(tmp_path / "raw")
    crashed.write(FIRST)
    crashed.write(BATCH)
    assert crashed.path is not None
    with open(crashed.path, "ab") as file:  # what the crash left after the last fsync
        file.write(tail)
    restarted = writer(tmp_path / "raw")
    with capture_logs() as logs:
        assert restarted.open() == len(FIRST + BATCH)
    assert crashed.path.read_bytes() == FIRST + BATCH
    [entry] = logs
    assert entry["event"] == "cut the torn tail a crash left in the journal"
    assert entry["file"] == str(crashed.path)
    assert (entry["kept_bytes"], entry["cut_bytes"]) == (len(FIRST + BATCH), len(tail))
    restarted.write(FIRST)
    assert torn_lines(tmp_path, "raw") == []
    assert [s.base for s in list_segments(tmp_path / "raw", "raw")] == [0, len(FIRST + BATCH)]


def test_whole_lines_stops_at_the_first_line_that_is_not_a_json_document(tmp_path: Path) -> None:
    path = tmp_path / "segment"
    path.write_bytes(FIRST + b"\n" + FIRST)  # an empty line is no record either
    assert whole_lines(path, len(FIRST) + 1) == len(FIRST)
    assert whole_lines(path, len(FIRST) - 1) == 0  # a line cut short by ``size``


@pytest.mark.parametrize("check_bytes", [1, 7, 4096])
def test_whole_lines_reads_in_pieces_of_any_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check_bytes: int
) -> None:
    monkeypatch.setattr(segments, "_CHECK_BYTES", check_bytes)
    path = tmp_path / "segment"
    for tail in (b"", b'{"n": 1', b"\0" * 5000, b"\0\n" + FIRST):
        path.write_bytes(FIRST + BATCH + tail)
        assert whole_lines(path, len(FIRST + BATCH + tail)) == len(FIRST + BATCH)
    assert whole_lines(path, len(FIRST) + 3) == len(FIRST)


def test_a_whole_series_is_left_as_it_is_at_open(tmp_path: Path) -> None:
    first = writer(tmp_path / "raw")
    first.write(BATCH)
    with capture_logs() as logs:
        assert writer(tmp_path / "raw").open() == len(BATCH)
    assert logs == []
    assert first.path is not None and first.path.read_bytes() == BATCH


def test_a_closed_segment_longer_than_the_next_base_counts_only_up_to_it(tmp_path: Path) -> None:
    # A failed batch whose rollback failed too: its torn tail stays, the next segment starts at
    # the valid end and says where that is. Open leaves it (it is not the last segment).
    directory = tmp_path / "raw"
    directory.mkdir()
    torn = directory / segment_name("raw", 0)
    torn.write_bytes(FIRST + BATCH[:100])
    (directory / segment_name("raw", len(FIRST))).write_bytes(BATCH)
    assert writer(directory).open() == len(FIRST + BATCH)
    assert torn.read_bytes() == FIRST + BATCH[:100]
    assert series(directory) == [
        (segment_name("raw", 0), 0, len(FIRST)),
        (segment_name("raw", len(FIRST)), len(FIRST), len(BATCH)),
    ]


def test_two_series_in_one_directory_do_not_see_each_other(tmp_path: Path) -> None:
    main, worker = writer(tmp_path / "raw", "raw"), writer(tmp_path / "raw", "raw-w1")
    main.write(FIRST)
    worker.write(BATCH)
    worker.write(FIRST)
    assert series(tmp_path / "raw", "raw") == [(segment_name("raw", 0), 0, len(FIRST))]
    assert series(tmp_path / "raw", "raw-w1") == [
        (segment_name("raw-w1", 0), 0, len(BATCH + FIRST))
    ]
    assert writer(tmp_path / "raw", "raw").open() == len(FIRST)
    assert writer(tmp_path / "raw", "raw-w1").open() == len(BATCH + FIRST)


def test_a_full_disk_fails_a_batch_whole_and_space_returning_lets_it_through_once(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "disk", 1 << 20) as disk:
        file = writer(disk / "raw")
        file.write(FIRST)
        ballast = fill(disk)
        for _ in range(2):  # a retry meets the same state, not a half-written batch
            with pytest.raises(SinkError, match="No space left on device"):
                file.write(BATCH)
            assert file.path is not None and file.path.read_bytes() == FIRST
            assert file.end == len(FIRST)
        ballast.unlink()
        file.write(BATCH)
        file.close()
        assert file.path is not None and file.path.read_bytes() == FIRST + BATCH
        assert file.end == len(FIRST + BATCH)


def test_a_segment_that_cannot_be_rolled_back_is_left_for_one_starting_at_the_valid_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ftruncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with mounted_tmpfs(tmp_path / "disk", 1 << 20) as disk:
        file = writer(disk / "raw")
        file.write(FIRST)
        torn = file.path
        ballast = fill(disk)
        with monkeypatch.context() as patch:
            patch.setattr(os, "ftruncate", ftruncate)
            with capture_logs() as logs, pytest.raises(SinkError, match="No space left"):
                file.write(BATCH)
        assert [e["event"] for e in logs] == [
            "cannot roll back a failed write; starting a new segment"
        ]
        ballast.unlink()
        file.write(BATCH)
        file.close()
        assert file.path == disk / "raw" / segment_name("raw", len(FIRST))
        assert file.path.read_bytes() == BATCH  # not appended after the torn tail
        assert torn is not None and torn.read_bytes().startswith(FIRST)
        assert len(torn.read_bytes()) > len(FIRST)  # the torn tail is there, and left
        assert series(disk / "raw") == [
            (segment_name("raw", 0), 0, len(FIRST)),
            (segment_name("raw", len(FIRST)), len(FIRST), len(BATCH)),
        ]


def test_a_first_batch_that_cannot_be_rolled_back_is_cut_off_on_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its segment holds no valid byte, so the next one would have the same name.
    real_pwrite = os.pwrite
    taken: list[int] = []

    def pwrite(fd: int, data: memoryview, offset: int) -> int:
        if taken:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        taken.append(real_pwrite(fd, data[: len(FIRST) + 3], offset))
        return taken[0]

    def ftruncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    file = writer(tmp_path / "raw")
    with monkeypatch.context() as patch:
        patch.setattr(os, "pwrite", pwrite)
        patch.setattr(os, "ftruncate", ftruncate)
        with pytest.raises(SinkError, match="No space left on device"):
            file.write(FIRST + BATCH)
    assert file.path is not None and file.path.read_bytes() == FIRST + b'{"n'
    file.write(BATCH)
    assert file.path == tmp_path / "raw" / segment_name("raw", 0)
    assert file.path.read_bytes() == BATCH
    assert file.end == len(BATCH)


def test_new_directories_are_fsynced_into_their_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    data = tmp_path / "new" / "data"
    journal = Journal(LocalSinkSettings(data_dir=data))
    journal.open()
    journal.close()
    assert {tmp_path, tmp_path / "new", data} <= set(synced)
    synced.clear()
    dead = SegmentWriter(data / "dead-letters", "dead-letters", journal.settings)
    dead.write(FIRST)
    dead.close()
    # The new directory in its parent, the new file in the directory, then the batch.
    assert synced == [data, data / "dead-letters", dead.path]


@pytest.mark.asyncio
async def test_a_notification_dead_letter_on_a_full_disk_leaves_the_sender_running(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "disk", 1 << 20) as disk:
        target = ScriptedTarget([Verdict(Outcome.REFUSED, "HTTP 400")])
        d = dispatcher(disk, target)
        d.start()
        ballast = fill(disk)
        submit(d, "a")
        stats = d.stats.targets["scripted"]
        await until(lambda: stats.dead_letters["refused"] == 1)
        # The sender takes "b" only once the dead-letter write of "a" is over: hold it there.
        target.hold = asyncio.Event()
        submit(d, "b")
        await until(lambda: len(target.batches) == 2)
        ballast.unlink()
        target.hold.set()
        await until(lambda: stats.dead_letters["refused"] == 2)
        await d.close(0.0)
        # "a" stays unsettled (its cursor holds it for the next start), nothing is torn.
        assert [x["record"]["raw_id"] for x in dead_letters(disk)] == ["b"]
        assert torn_lines(disk, "dead-letters") == []
