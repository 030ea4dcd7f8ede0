"""The journal and shipper metrics as a scrape sees them: a real journal on disk, real shippers
and their budget, and an in-memory target that holds one stream, takes one and refuses one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio

from gateway.journal.settings import JournalSettings, LocalSinkSettings
from gateway.journal.store import Journal
from gateway.sinks.shipper import Shipper
from gateway.sinks.shipping import Shipping
from gateway.sinks.shipping_metrics import LISTING_TTL_S, ShippingCollector
from tests.gateway.pipeline.memory_sink import MemorySink, until

BUDGET_BYTES = 1024 * 1024  # the smallest journal.max_bytes


@dataclass
class Rig:
    journal: Journal
    sink: MemorySink
    shipping: Shipping
    full: list[bool]


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """raw is held by the target (its gate closed), parsed is taken, errors refused."""
    journal = Journal(LocalSinkSettings(data_dir=tmp_path, rotate_bytes=1024, fsync="never"))
    journal.open()
    sink = MemorySink(gated=True)
    sink.gates["parsed"].set()
    sink.gates["errors"].set()
    sink.lose.add("errors")
    shippers = [
        Shipper("memory", stream, journal, sink, lambda stream, offset, lost: None)
        for stream in ("raw", "parsed", "errors")
    ]
    full: list[bool] = []
    shipping = Shipping(JournalSettings(max_bytes=BUDGET_BYTES), journal, shippers, full.append)
    shipping.open()
    shipping.start()
    try:
        yield Rig(journal, sink, shipping, full)
    finally:
        await shipping.close()
        journal.close()


def records(count: int, size: int = 100) -> list[bytes]:
    return [
        msgspec.json.encode({"device_id": f"d{i}", "pad": "x" * (size - 32)}) for i in range(count)
    ]


async def write(journal: Journal, stream: str, batch: list[bytes]) -> None:
    await journal.write(stream, batch, ["k"] * len(batch))


def scrape(collector: ShippingCollector) -> dict[tuple[str, tuple[str, ...]], float]:
    """Every sample by name and label values."""
    samples: dict[tuple[str, tuple[str, ...]], float] = {}
    for family in collector.collect():
        for sample in family.samples:
            samples[sample.name, tuple(sample.labels.values())] = sample.value
    return samples


def segment_files(journal: Journal, stream: str) -> int:
    return len(list(journal.directory(stream).glob(f"{stream}-*.jsonl")))


@pytest.mark.asyncio
async def test_a_scrape_shows_the_journal_and_each_shippers_lag_and_progress(rig: Rig) -> None:
    journal, shipping = rig.journal, rig.shipping
    for stream in ("raw", "parsed", "errors"):
        for _ in range(3):  # across segments: they rotate at 1 KiB
            await write(journal, stream, records(20))
    [raw, parsed, errors] = shipping.shippers
    await until(lambda: parsed.shipped_records == 60 and errors.dead_letters == 60)
    m = scrape(ShippingCollector(shipping))

    end = {stream: journal.end(stream) for stream in ("raw", "parsed", "errors")}
    for stream, stream_end in end.items():
        assert m["gateway_journal_bytes", (stream,)] == stream_end
        assert m["gateway_journal_segments", (stream,)] == segment_files(journal, stream) > 1
    assert m["gateway_journal_bytes", ("notifications",)] == 0
    assert m["gateway_journal_unshipped_bytes", ("raw",)] == end["raw"]
    assert m["gateway_journal_unshipped_bytes", ("parsed",)] == 0
    assert m["gateway_journal_max_bytes", ()] == BUDGET_BYTES
    assert m["gateway_journal_budget_used_bytes", ()] == end["raw"]
    assert m["gateway_journal_full", ()] == 0
    assert m["gateway_journal_free_bytes", ()] > 0
    assert m["gateway_journal_segments_deleted_total", ()] == 0

    held, taken, refused = ("raw", "memory"), ("parsed", "memory"), ("errors", "memory")
    assert m["gateway_shipper_lag_bytes", held] == end["raw"]
    assert m["gateway_shipper_lag_records", held] == 60
    assert m["gateway_shipper_oldest_unshipped_seconds", held] > 0
    assert m["gateway_shipper_shipped_records_total", held] == 0
    assert m["gateway_shipper_lag_bytes", taken] == 0
    assert m["gateway_shipper_lag_records", taken] == 0
    assert m["gateway_shipper_oldest_unshipped_seconds", taken] == 0
    assert m["gateway_shipper_shipped_records_total", taken] == 60
    assert m["gateway_shipper_shipped_bytes_total", taken] == end["parsed"]
    assert m["gateway_shipper_dead_letters_total", taken] == 0
    assert m["gateway_shipper_dead_letters_total", refused] == 60
    assert m["gateway_shipper_lag_records", refused] == 0  # refused for good: passed

    rig.sink.gates["raw"].set()  # the target takes raw again
    await until(lambda: raw.shipped_records == 60)
    m = scrape(ShippingCollector(shipping))
    assert m["gateway_shipper_lag_bytes", held] == 0
    assert m["gateway_shipper_oldest_unshipped_seconds", held] == 0
    assert m["gateway_journal_unshipped_bytes", ("raw",)] == 0


@pytest.mark.asyncio
async def test_the_budget_full_shows_and_segments_are_listed_at_most_once_a_second(
    rig: Rig,
) -> None:
    now = [0.0]
    collector = ShippingCollector(rig.shipping, clock=lambda: now[0])
    await write(rig.journal, "raw", records(1))
    first = scrape(collector)
    assert first["gateway_journal_segments", ("raw",)] == 1
    assert first["gateway_journal_full", ()] == 0

    while rig.journal.end("raw") < BUDGET_BYTES:  # held by the target: all of it unshipped
        await write(rig.journal, "raw", records(100, size=1000))
    rig.shipping.check_budget()
    assert rig.full == [True]
    cached = scrape(collector)
    assert cached["gateway_journal_full", ()] == 1
    assert cached["gateway_journal_unshipped_bytes", ("raw",)] == rig.journal.end("raw")
    assert cached["gateway_journal_segments", ("raw",)] == 1  # listed less than a second ago
    now[0] += LISTING_TTL_S
    fresh = scrape(collector)
    assert fresh["gateway_journal_segments", ("raw",)] == segment_files(rig.journal, "raw") > 1
    assert fresh["gateway_journal_bytes", ("raw",)] == rig.journal.end("raw")
