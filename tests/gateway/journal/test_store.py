"""The journal of one writer: its lock, one series per stream, what a write tells its watchers and
when each stretch was written."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.common.sink import SinkError
from gateway.journal.segments import segment_name
from gateway.journal.settings import LocalSinkSettings
from gateway.journal.store import STREAMS, Journal, WriteTimes, series_prefix
from tests.gateway.disks import fill, mounted_tmpfs, torn_lines
from tests.gateway.gatewayproc import read_records


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    opened = Journal(LocalSinkSettings(data_dir=tmp_path))
    opened.open()
    yield opened
    opened.close()


def test_each_writer_has_its_own_series_prefix() -> None:
    assert series_prefix("raw", None) == "raw"
    assert series_prefix("notifications", "w3") == "notifications-w3"


def test_a_second_journal_on_the_same_series_is_refused_naming_the_holder(
    tmp_path: Path,
) -> None:
    settings = LocalSinkSettings(data_dir=tmp_path)
    first = Journal(settings, "w1")
    first.open()
    with pytest.raises(SinkError, match=f"{tmp_path} is in use by pid {os.getpid()} "):
        Journal(settings, "w1").open()
    first.close()
    again = Journal(settings, "w1")  # closing released it
    again.open()
    again.close()


def test_journals_of_different_writers_share_a_data_directory(tmp_path: Path) -> None:
    settings = LocalSinkSettings(data_dir=tmp_path)
    journals = [Journal(settings, tag) for tag in (None, "w0", "w1", "replay")]
    for journal in journals:
        journal.open()
    locks = [".journal-main.lock", ".journal-w0.lock", ".journal-w1.lock", ".journal-replay.lock"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*locks, *STREAMS])
    for journal in journals:
        journal.close()


def test_a_journal_that_fails_to_open_does_not_keep_its_lock(tmp_path: Path) -> None:
    settings = LocalSinkSettings(data_dir=tmp_path)
    (tmp_path / "parsed").write_bytes(b"")  # not a directory
    with pytest.raises(SinkError, match="parsed"):
        Journal(settings).open()
    (tmp_path / "parsed").unlink()
    journal = Journal(settings)
    journal.open()
    journal.close()


@pytest.mark.asyncio
async def test_a_write_is_in_its_stream_s_series_when_it_returns(journal: Journal) -> None:
    assert journal.current_file("raw") is None
    assert await journal.write("raw", [b'{"a":1}', b'{"b":2}'], ["d1", "d2"]) == []
    await journal.write("raw", [b'{"c":3}'], ["d1"])
    assert journal.end("raw") == 24
    assert journal.records_written == {"raw": 3, "parsed": 0, "errors": 0, "notifications": 0}
    assert journal.current_file("raw") == journal.directory("raw") / segment_name("raw", 0)
    assert (journal.data_dir / "raw" / segment_name("raw", 0)).read_bytes() == (
        b'{"a":1}\n{"b":2}\n{"c":3}\n'
    )
    assert [journal.end(s) for s in ("parsed", "errors", "notifications")] == [0, 0, 0]


@pytest.mark.asyncio
async def test_a_restarted_journal_ends_where_the_last_one_did(tmp_path: Path) -> None:
    settings = LocalSinkSettings(data_dir=tmp_path)
    first = Journal(settings, "w0")
    first.open()
    await first.write("parsed", [b'{"a":1}'], ["d1"])
    first.close()
    again = Journal(settings, "w0")
    again.open()
    assert again.prefix("parsed") == "parsed-w0"
    assert again.end("parsed") == 8
    assert again.records_written["parsed"] == 0  # counts this process's writes
    await again.write("parsed", [b'{"b":2}'], ["d1"])
    assert again.current_file("parsed") == tmp_path / "parsed" / segment_name("parsed-w0", 8)
    again.close()


@pytest.mark.asyncio
async def test_a_write_the_disk_refuses_counts_nowhere_and_its_retry_once(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk", 1 << 20) as disk:
        journal = Journal(LocalSinkSettings(data_dir=disk))
        journal.open()
        await journal.write("raw", [b'{"n": 0}'], ["d1"])
        watcher = journal.watch("raw")
        batch = [b'{"n": %d, "pad": "%s"}' % (n, b"x" * 100) for n in range(1, 60)]
        ballast = fill(disk)
        with pytest.raises(SinkError, match="No space left on device"):
            await journal.write("raw", batch, ["d1"] * len(batch))
        assert (journal.end("raw"), journal.records_written["raw"]) == (9, 1)
        assert not watcher.is_set()
        ballast.unlink()
        await journal.write("raw", batch, ["d1"] * len(batch))
        assert journal.records_written["raw"] == 1 + len(batch)
        assert watcher.is_set()
        journal.close()
        assert torn_lines(disk, "raw") == []
        assert journal.end("raw") == sum(len(r) + 1 for r in [b'{"n": 0}', *batch])
        assert len(read_records(disk, "raw")) == 1 + len(batch)


@pytest.mark.asyncio
async def test_watchers_of_a_stream_learn_of_each_write_to_it(journal: Journal) -> None:
    raw, other, parsed = journal.watch("raw"), journal.watch("raw"), journal.watch("parsed")
    await journal.write("raw", [b"{}"], ["d1"])
    assert raw.is_set() and other.is_set() and not parsed.is_set()
    raw.clear()
    waiter = asyncio.create_task(raw.wait())
    await journal.write("raw", [b"{}"], ["d1"])
    await asyncio.wait_for(waiter, 5)


@pytest.mark.asyncio
async def test_when_each_stretch_was_written_until_every_reader_passed_it(
    journal: Journal,
) -> None:
    before = time.monotonic()
    await journal.write("raw", [b'{"a":1}'], ["d1"])
    await journal.write("raw", [b'{"b":2}'], ["d1"])
    written = journal.written_at("raw", 0)
    assert written is not None and before <= written <= time.monotonic()
    assert journal.written_at("raw", 8) == written  # within the same second
    assert journal.written_at("raw", 16) is None  # past the end
    assert journal.written_at("parsed", 0) is None
    journal.forget_before("raw", 16)
    assert journal.written_at("raw", 8) is None


def test_write_times_keep_one_entry_per_second() -> None:
    times = WriteTimes()
    times.wrote(10, 100.0)
    times.wrote(20, 100.9)
    times.wrote(30, 101.0)
    times.wrote(45, 103.5)
    assert [times.at(o) for o in (0, 19, 20, 29, 30, 44, 45)] == [
        100.0, 100.0, 101.0, 101.0, 103.5, 103.5, None
    ]  # fmt: skip
    times.forget_before(25)  # the entry ending at 20 only
    assert [times.at(o) for o in (25, 30)] == [101.0, 103.5]
    times.forget_before(45)
    assert times.at(44) is None
