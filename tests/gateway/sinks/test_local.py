"""The local sink's files under real faults: a full disk (a tmpfs filled by a ballast file), a
rollback that fails, a restart that gets the same file name, new directories' durability."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from pathlib import Path

import pytest

from gateway.notify.journal import Journal
from gateway.notify.queue import Outcome, Verdict
from gateway.sinks.base import SinkError
from gateway.sinks.local import LocalSink, RotatingFile
from gateway.sinks.settings import LocalSinkSettings
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


def test_a_full_disk_fails_a_small_batch_whole_and_space_returning_lets_it_through(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "disk", 1 << 20) as disk:
        file = RotatingFile(disk / "raw", "raw", LocalSinkSettings(data_dir=disk))
        file.write(FIRST)
        ballast = fill(disk)
        for _ in range(2):  # a retry meets the same state, not a half-written batch
            with pytest.raises(SinkError, match="No space left on device"):
                file.write(BATCH)
            assert file.path is not None and file.path.read_bytes() == FIRST
        ballast.unlink()
        file.write(BATCH)
        file.close()
        assert file.path is not None and file.path.read_bytes() == FIRST + BATCH


def test_a_file_that_cannot_be_rolled_back_is_left_for_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ftruncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with mounted_tmpfs(tmp_path / "disk", 1 << 20) as disk:
        file = RotatingFile(disk / "raw", "raw", LocalSinkSettings(data_dir=disk))
        file.write(FIRST)
        torn = file.path
        ballast = fill(disk)
        with monkeypatch.context() as patch:
            patch.setattr(os, "ftruncate", ftruncate)
            with pytest.raises(SinkError, match="No space left on device"):
                file.write(BATCH)
        ballast.unlink()
        file.write(BATCH)
        file.close()
        assert file.path != torn and file.path is not None
        assert file.path.read_bytes() == BATCH  # not appended after the torn tail
        assert torn is not None and torn.read_bytes().startswith(FIRST)


def test_a_restart_with_the_same_pid_in_the_same_second_never_writes_into_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1767225600.0)  # both start in the same second
    settings = LocalSinkSettings(data_dir=tmp_path)
    crashed = RotatingFile(tmp_path / "notifications", "notifications", settings)
    crashed.write(FIRST)  # ACKed, then the process died without closing the file
    restarted = RotatingFile(tmp_path / "notifications", "notifications", settings)
    restarted.write(BATCH)
    assert crashed.path is not None and restarted.path is not None
    assert restarted.path != crashed.path
    assert crashed.path.read_bytes() == FIRST
    assert restarted.path.read_bytes() == BATCH
    # The next free serial keeps the journal's order (start second, pid, serial) = write order.
    assert Journal(tmp_path / "notifications").files() == [crashed.path.name, restarted.path.name]


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
    sink = LocalSink(LocalSinkSettings(data_dir=data))
    sink.open()
    assert {tmp_path, tmp_path / "new", data} <= set(synced)
    synced.clear()
    dead = RotatingFile(data / "dead-letters", "dead-letters", sink.settings)
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
