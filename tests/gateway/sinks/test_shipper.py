"""Shippers over a real journal (files in a temporary directory) into an in-memory target: order,
cursors across restarts, dead letters passed and reported, the disk budget and retention, and
the ``delivered`` ACK policy released by the shippers' progress."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.common.stats import SinkStats
from gateway.common.tickets import Outcome, Ticket
from gateway.journal.cursor import Cursor, cursor_path
from gateway.journal.settings import JournalSettings, LocalSinkSettings
from gateway.journal.store import STREAMS, Journal
from gateway.pipeline.accept import FrameSource, Pipeline
from gateway.pipeline.flow_control import FlowControl
from gateway.pipeline.settings import PipelineSettings
from gateway.sinks.shipper import MAX_BATCH_BYTES, Shipper
from gateway.sinks.shipping import Shipping
from parser.events import Frame
from parser.records import RAW_SCHEMA, RawRecord, to_json
from tests.gateway.disks import fill, mounted_tmpfs
from tests.gateway.pipeline.memory_sink import MemorySink, until

Progress = list[tuple[str, int, list[int]]]


def record(n: int, device: str = "dev") -> bytes:
    return json.dumps({"id": f"r{n}", "device_id": device, "n": n}).encode()


@pytest_asyncio.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = Journal(LocalSinkSettings(data_dir=tmp_path, rotate_bytes=1024))
    j.open()
    yield j
    j.close()


def shipper(journal: Journal, sink: MemorySink, progress: Progress) -> Shipper:
    return Shipper("memory", "raw", journal, sink, lambda *p: progress.append(p))


async def run(ship: Shipper, condition: Callable[[], bool]) -> None:
    task = asyncio.create_task(ship.run())
    try:
        await until(condition)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ship.close()


@pytest.mark.asyncio
async def test_records_ship_in_journal_order_and_a_restart_resumes_at_the_cursor(
    journal: Journal,
) -> None:
    sink = MemorySink()
    progress: Progress = []
    first = shipper(journal, sink, progress)
    first.open()  # no cursor yet: starts at the journal's end, saved at once
    assert Cursor(cursor_path(journal.data_dir, "raw", "memory")).load() == 0
    for batch in range(5):  # over several 1 KiB segments
        await journal.write("raw", [record(batch * 10 + i) for i in range(10)], [])
    await run(first, lambda: len(sink.records["raw"]) == 50)
    assert sink.records["raw"] == [record(n) for n in range(50)]
    assert sink.keys["raw"] == ["dev"] * 50  # the partition key is the record's device id
    end = journal.end("raw")
    assert progress[-1][:2] == ("raw", end) and first.lag_bytes() == 0
    assert Cursor(cursor_path(journal.data_dir, "raw", "memory")).load() == end

    await journal.write("raw", [record(50)], [])
    again = MemorySink(gated=True)
    second = shipper(journal, again, [])
    second.open()
    task = asyncio.create_task(second.run())
    try:  # the backlog left at the restart, counted on the shipper's thread
        await until(lambda: second.lag_records() == 1)
        assert second.lag_bytes() == len(record(50)) + 1
        again.gates["raw"].set()
        await until(lambda: len(again.records["raw"]) == 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await second.close()
    assert again.records["raw"] == [record(50)]  # only what the first never shipped
    assert second.lag_records() == 0


@pytest.mark.asyncio
async def test_a_target_added_later_is_not_sent_history_and_an_unreadable_cursor_sends_it_all(
    journal: Journal,
) -> None:
    await journal.write("raw", [record(0), record(1)], [])
    late = MemorySink()
    ship = shipper(journal, late, [])
    ship.open()
    await journal.write("raw", [record(2)], [])
    await run(ship, lambda: len(late.records["raw"]) == 1)
    assert late.records["raw"] == [record(2)]

    cursor_path(journal.data_dir, "raw", "memory").write_bytes(b"{not json")
    everything = MemorySink()
    ship = shipper(journal, everything, [])
    ship.open()  # sending again, never skipping
    await run(ship, lambda: len(everything.records["raw"]) == 3)
    assert everything.records["raw"] == [record(0), record(1), record(2)]


@pytest.mark.asyncio
async def test_dead_lettered_records_are_passed_and_their_offsets_reported(
    journal: Journal,
) -> None:
    sink = MemorySink()
    progress: Progress = []
    sink.lose.add("raw")
    ship = shipper(journal, sink, progress)
    ship.open()
    await journal.write("raw", [record(0), record(1)], [])
    await run(ship, lambda: ship.offset == journal.end("raw"))
    assert progress == [("raw", journal.end("raw"), [0, len(record(0)) + 1])]
    assert ship.dead_letters == 2 and ship.shipped_records == 0 and ship.lag_records() == 0


class Settled:
    def __init__(self) -> None:
        self.outcomes: list[tuple[str, Outcome]] = []

    def settled(self, note: str, outcome: Outcome) -> None:
        self.outcomes.append((note, outcome))


@pytest.mark.asyncio
async def test_delivered_frames_are_acked_once_shipped_journaled_ones_once_written(
    journal: Journal,
) -> None:
    settings = PipelineSettings()
    flow = FlowControl(settings.high_water_bytes, settings.low_water_bytes, time.monotonic)
    stats = {stream: SinkStats(stream) for stream in STREAMS}
    target = MemorySink(gated=True)
    pipeline: Pipeline

    def progress(stream: str, offset: int, lost: list[int]) -> None:
        pipeline.shipped(stream, offset, lost)

    ship = Shipper("memory", "raw", journal, target, progress)
    ship.open()
    pipeline = Pipeline(
        settings,
        dict.fromkeys(STREAMS, journal),
        flow,
        stats,
        shipped_streams=frozenset({"raw"}),
        journal_end=journal.end,
    )
    pipeline.start()
    task = asyncio.create_task(ship.run())
    settled = Settled()
    frame = Frame("356307042441013", b"\x01\x02", b"ack", ())
    try:
        pipeline.accept(FrameSource("x", "tcp", None), frame, Ticket(settled, "journaled"))
        pipeline.accept(FrameSource("x", "tcp", None, True), frame, Ticket(settled, "delivered"))
        await until(lambda: bool(settled.outcomes))
        await until(lambda: journal.records_written["raw"] == 2)
        assert settled.outcomes == [("journaled", Outcome.WRITTEN)]  # the target holds the rest
        target.gates["raw"].set()
        await until(lambda: len(settled.outcomes) == 2)
        assert settled.outcomes[1] == ("delivered", Outcome.WRITTEN)
        target.lose.add("raw")  # refused for good: the frame is lost, never ACKed
        pipeline.accept(FrameSource("x", "tcp", None, True), frame, Ticket(settled, "refused"))
        await until(lambda: len(settled.outcomes) == 3)
        assert settled.outcomes[2] == ("refused", Outcome.LOST)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ship.close()
        await pipeline.close()


class Reader:
    paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


@pytest.mark.asyncio
async def test_the_budget_pauses_readers_while_unshipped_bytes_are_over_it(
    journal: Journal,
) -> None:
    flow = FlowControl(1 << 30, 1 << 29, time.monotonic)
    reader = Reader()
    flow.register(reader)
    target = MemorySink(gated=True)
    ship = Shipper("memory", "raw", journal, target, lambda *p: None)
    budget = JournalSettings(max_bytes=1024 * 1024, min_free_bytes=0)
    shipping = Shipping(budget, journal, [ship], lambda full: flow.hold("journal", full))
    shipping.open()
    shipping.start()
    try:
        big = b'{"device_id": "d", "pad": "' + b"x" * 100_000 + b'"}'
        for _ in range(11):
            await journal.write("raw", [big], [])
        await until(lambda: reader.paused)
        assert shipping.full and "max_bytes" in shipping.full_reason
        target.gates["raw"].set()
        await until(lambda: not reader.paused)
        assert not shipping.full and ship.lag_bytes() == 0
    finally:
        await shipping.close()


@pytest.mark.asyncio
async def test_retention_deletes_only_passed_segments_older_than_retain_s(
    journal: Journal,
) -> None:
    for n in range(8):  # 1 KiB segments: several
        await journal.write("raw", [record(n) + b" " * 300], [])
        await journal.write("errors", [record(n) + b" " * 300], [])
    sink = MemorySink(gated=True)
    ship = Shipper("memory", "raw", journal, sink, lambda *p: None)
    ship.open()
    ship.offset = 0  # nothing shipped
    raw_dir, errors_dir = journal.directory("raw"), journal.directory("errors")
    old = time.time() - 3600
    for path in [*raw_dir.iterdir(), *errors_dir.iterdir()]:
        os.utime(path, (old, old))
    shipping = Shipping(JournalSettings(retain_s=60), journal, [ship], lambda full: None)
    before_raw = sorted(raw_dir.iterdir())
    passed = {stream: shipping.passed(stream) for stream in STREAMS}
    removed = shipping.remove_passed(passed)
    assert sorted(raw_dir.iterdir()) == before_raw  # unshipped: kept, however old
    errors_left = sorted(errors_dir.iterdir())
    assert len(errors_left) == 1 and errors_left[0] == journal.current_file("errors")
    assert removed > 0
    ship.offset = journal.end("raw")  # all shipped: all but the segment being written go
    fresh = sorted(raw_dir.iterdir())[-2]
    os.utime(fresh, None)  # … and one still younger than retention
    shipping.remove_passed({stream: shipping.passed(stream) for stream in STREAMS})
    assert sorted(raw_dir.iterdir()) == sorted({fresh, journal.current_file("raw")})  # type: ignore[type-var]
    await ship.close()


@pytest.mark.asyncio
async def test_the_budget_counts_another_journals_unshipped_bytes(journal: Journal) -> None:
    flow = FlowControl(1 << 30, 1 << 29, time.monotonic)
    reader = Reader()
    flow.register(reader)
    budget = JournalSettings(max_bytes=1024 * 1024, min_free_bytes=0)
    shipping = Shipping(budget, journal, [], lambda full: flow.hold("journal", full))
    bridge_lag = [0]
    shipping.count_also(lambda: bridge_lag[0])
    shipping.check_budget()
    assert not reader.paused
    bridge_lag[0] = 2 * 1024 * 1024  # the bridge's destination is down
    shipping.check_budget()
    assert reader.paused and shipping.unshipped_bytes() == 2 * 1024 * 1024
    bridge_lag[0] = 0
    shipping.check_budget()
    assert not reader.paused


@pytest.mark.asyncio
async def test_a_disk_short_of_space_loses_shipped_segments_first_and_nothing_else(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "disk", 8 << 20) as disk:
        journal = Journal(LocalSinkSettings(data_dir=disk, rotate_bytes=64 * 1024))
        journal.open()
        pad = b" " * 8000
        for n in range(40):  # ~320 KiB per stream, five segments each
            await journal.write("raw", [record(n) + pad], [])
            await journal.write("errors", [record(n) + pad], [])
        sink = MemorySink(gated=True)
        ship = Shipper("memory", "raw", journal, sink, lambda *p: None)
        ship.open()
        ship.offset = journal.end("raw") // 2  # half of raw is shipped
        raw_before, errors_before = (
            sorted(journal.directory(s).iterdir()) for s in ("raw", "errors")
        )
        budget = JournalSettings(min_free_bytes=200 * 1024, retain_s=None)
        shipping = Shipping(budget, journal, [ship], lambda full: None)
        ballast = fill(disk)
        os.truncate(ballast, ballast.stat().st_size - 100 * 1024)  # 100 KiB free: too little
        removed = shipping.make_room({"raw": shipping.passed("raw")})
        raw_after = sorted(journal.directory("raw").iterdir())
        assert 0 < removed == len(raw_before) - len(raw_after)
        assert raw_after == raw_before[removed:]  # the oldest went first
        for gone in raw_before[:removed]:  # … only segments wholly shipped
            base = int(gone.stem.rpartition("-")[2])
            assert base + 64 * 1024 <= ship.offset
        assert sorted(journal.directory("errors").iterdir()) == errors_before  # no other copy
        await ship.close()
        journal.close()


def test_the_partition_key_is_the_pipelines_device_id_else_peer(journal: Journal) -> None:
    key = Shipper("memory", "raw", journal, MemorySink(), lambda *p: None)._key
    raw = RawRecord(RAW_SCHEMA, "a1", "356307042441013", "evb1", "tcp", "10.0.0.1:5", "t", b"\x01")
    assert key(to_json(raw)) == "356307042441013"
    nameless = RawRecord(RAW_SCHEMA, "a2", None, "evb1", "tcp", "10.0.0.1:5", "t", b"\x01")
    assert key(to_json(nameless)) == "10.0.0.1:5"
    quoted = RawRecord(RAW_SCHEMA, "a3", 'dev "7"', "json", "mqtt", None, "t", b"{}")
    assert key(to_json(quoted)) == 'dev "7"'
    long = RawRecord(RAW_SCHEMA, "a4", "é" * 300, "json", "mqtt", None, "t", b"{}")
    assert key(to_json(long)) == "é" * 256
    assert key(b"not json") == "unknown"


@pytest.mark.asyncio
async def test_a_shipper_that_caught_up_saves_its_cursor_at_once(journal: Journal) -> None:
    """It saved only after a write at most once a second: the last burst before a quiet spell
    stayed unsaved (status showed lag, a restart shipped it again)."""
    sink = MemorySink()
    ship = shipper(journal, sink, [])
    ship.open()
    cursor = Cursor(cursor_path(journal.data_dir, "raw", "memory"))
    task = asyncio.create_task(ship.run())
    try:
        for n in range(3):  # bursts closer together than CURSOR_SAVE_S
            await journal.write("raw", [record(n)], [])
            await until(lambda: cursor.load() == journal.end("raw"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ship.close()


class CountingSink(MemorySink):
    """Counts the calls begun (a gated call is begun and waiting)."""

    calls = 0

    async def write(self, stream: str, records: list[bytes], keys: list[str]) -> list[int]:
        self.calls += 1
        return await super().write(stream, records, keys)


@pytest.mark.asyncio
async def test_the_linger_counts_from_when_records_were_journaled_not_from_when_seen(
    journal: Journal,
) -> None:
    """Records journaled during a call have lingered since it began; a shipper that started
    the linger only once the call returned held them one linger longer (delivered ACKs waited
    call + linger + call). A 30 s linger and a clock the test moves: the old way could not ship
    the second record within the 5 s ``until`` allows, however fast the machine."""
    jump = [0.0]
    sink = CountingSink(gated=True)
    clock = lambda: time.monotonic() + jump[0]  # noqa: E731
    ship = Shipper("memory", "raw", journal, sink, lambda *p: None, clock, linger_s=30.0)
    ship.open()
    task = asyncio.create_task(ship.run())
    try:
        full = b'{"device_id": "d", "pad": "' + b"x" * MAX_BATCH_BYTES + b'"}'
        await journal.write("raw", [full], [])  # a full batch: no linger, the call begins
        await until(lambda: sink.calls == 1)
        await journal.write("raw", [record(1)], [])  # journaled during the call …
        jump[0] = 60.0  # … which lasts longer than the linger
        sink.gates["raw"].set()
        await until(lambda: len(sink.records["raw"]) == 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ship.close()
