"""``gateway lake compact``: one sorted, deduplicated Parquet file per stream and day, the same
bytes on every run; late records merged by re-running their day."""

from __future__ import annotations

import json
import os
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from gateway.lake.compact import connect
from gateway.lake.store import relevant
from gateway.lake.tables import STREAMS
from tests.lake.lakes import FIRST_DAY, lake, partition_file, rows

NEXT_DAY = "2026-05-30"


@pytest.fixture
def data(fleet_days: Path) -> Path:
    return fleet_days


def compact(data: Path, out: Path, day: str = FIRST_DAY, *more: str) -> None:
    assert lake("compact", "--input", str(data), "--output", str(out), "--date", day, *more) == 0


def outputs(lake_dir: Path, day: str = FIRST_DAY) -> dict[str, bytes]:
    return {s: partition_file(lake_dir, s, day).read_bytes() for s in STREAMS}


def test_a_day_is_one_sorted_typed_file_per_stream(data: Path, tmp_path: Path) -> None:
    compact(data, tmp_path)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        f"stream={s}/dt={FIRST_DAY}/{s}.parquet" for s in ("notifications", "parsed", "raw")
    ]
    parsed = rows(partition_file(tmp_path, "parsed", FIRST_DAY))
    keys = [(r["device_id"], r["ts"], r["id"]) for r in parsed if r["ts"] is not None]
    assert keys == sorted(keys)
    assert {r["ts"].date().isoformat() for r in parsed if r["ts"] is not None} == {FIRST_DAY}
    telemetry = next(r for r in parsed if r["kind"] == "telemetry" and r["lat"] is not None)
    assert isinstance(telemetry["soc_pct"], float) and isinstance(telemetry["ignition"], bool)
    assert telemetry["metrics_other"] == {}
    cells = next(r for r in parsed if r["kind"] == "telemetry" and r["cell_voltages_v"])
    assert len(cells["cell_voltages_v"]) == 96 and cells["metrics_other"] == {}
    login = next(r for r in parsed if r["kind"] == "login")
    assert login["attrs"] == {"firmware": "1.4"}
    raw = rows(partition_file(tmp_path, "raw", FIRST_DAY))
    assert all(isinstance(r["payload"], bytes) and r["payload"][:2] == b"EV" for r in raw)
    with duckdb.connect() as con:
        meta = con.execute(
            "SELECT key::VARCHAR, value::VARCHAR FROM parquet_kv_metadata(?)",
            [str(partition_file(tmp_path, "parsed", FIRST_DAY))],
        ).fetchall()
        codec = con.execute(
            "SELECT DISTINCT compression FROM parquet_metadata(?)",
            [str(partition_file(tmp_path, "parsed", FIRST_DAY))],
        ).fetchall()
    assert dict(meta) == {"schema_version": "ev.parsed/1", "day": FIRST_DAY}
    assert codec == [("ZSTD",)]


def test_rerunning_a_day_changes_nothing(data: Path, tmp_path: Path) -> None:
    compact(data, tmp_path)
    first = outputs(tmp_path)
    compact(data, tmp_path)
    assert outputs(tmp_path) == first
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no staged file left behind


def test_duplicates_injected_into_the_input_vanish(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compact(data, tmp_path / "clean")
    capsys.readouterr()
    dirty = tmp_path / "dirty"
    shutil.copytree(data, dirty)
    injected = {}
    for stream in STREAMS:
        (source,) = (dirty / stream).glob(f"*{FIRST_DAY.replace('-', '')}*")
        lines = source.read_bytes().splitlines(keepends=True)
        again = lines[::3]
        injected[stream] = len(again)
        # Resent and redelivered: some again in the same file, the rest in a later one.
        with source.open("ab") as f:
            f.writelines(again[:10])
        later = dirty / stream / f"{stream}-{FIRST_DAY.replace('-', '')}T120000Z-7-0001.jsonl"
        later.write_bytes(b"".join(again[10:]))
    compact(dirty, tmp_path / "deduplicated")
    summary = json.loads(capsys.readouterr().out)
    assert outputs(tmp_path / "deduplicated") == outputs(tmp_path / "clean")
    assert {s: summary["streams"][s]["duplicates"] for s in STREAMS} == injected


def test_late_records_are_merged_by_rerunning_their_day(data: Path, tmp_path: Path) -> None:
    compact(data, tmp_path / "complete")
    complete = outputs(tmp_path / "complete")
    late = tmp_path / "late"
    shutil.copytree(data, late)
    (source,) = (late / "parsed").glob("*20260529T*")
    lines = source.read_bytes().splitlines(keepends=True)
    source.write_bytes(b"".join(lines[:-500]))  # the day as first compacted: a backlog missing
    compact(late, tmp_path / "late-lake")
    assert (
        len(rows(partition_file(tmp_path / "late-lake", "parsed", FIRST_DAY))) == len(lines) - 500
    )
    # The device's backlog arrives two days later, in a file of that day.
    (late / "parsed" / "parsed-20260531T080000Z-9-0001.jsonl").write_bytes(b"".join(lines[-500:]))
    compact(late, tmp_path / "late-lake")
    assert outputs(tmp_path / "late-lake")["parsed"] == complete["parsed"]


def test_a_torn_last_line_and_other_days_records_are_left_out(data: Path, tmp_path: Path) -> None:
    compact(data, tmp_path / "clean")
    torn = tmp_path / "torn"
    shutil.copytree(data, torn)
    (source,) = (torn / "parsed").glob("*20260529T*")
    with source.open("ab") as f:
        f.write(b'{"schema":"ev.parsed/1","id":"01')  # a crash mid-write
    # The next day's file holds that day's records only: none of them is the first day's.
    compact(torn, tmp_path / "torn-lake")
    assert outputs(tmp_path / "torn-lake") == outputs(tmp_path / "clean")
    compact(torn, tmp_path / "torn-lake", NEXT_DAY)
    next_day = rows(partition_file(tmp_path / "torn-lake", "parsed", NEXT_DAY))
    assert next_day and {r["ts"].date().isoformat() for r in next_day if r["ts"]} == {NEXT_DAY}


def test_a_day_without_records_is_an_empty_file_of_the_same_columns(
    data: Path, tmp_path: Path
) -> None:
    compact(data, tmp_path, "2026-06-10")
    compact(data, tmp_path)
    with duckdb.connect() as con:
        for stream in STREAMS:
            empty, full = (
                con.execute(
                    "SELECT name, type FROM parquet_schema(?)",
                    [str(partition_file(tmp_path, stream, day))],
                ).fetchall()
                for day in ("2026-06-10", FIRST_DAY)
            )
            assert empty == full
            assert rows(partition_file(tmp_path, stream, "2026-06-10")) == []


@pytest.mark.parametrize(
    ("name", "late_days", "read"),
    [
        ("parsed-20260528T230000Z-1-0001.jsonl", None, True),  # opened before midnight
        ("parsed-20260527T230000Z-1-0001.jsonl", None, False),  # rotated before the day began
        ("parsed-20261207T042850Z-9-0001.jsonl", None, True),  # a replay written months later
        ("parsed-20261207T042850Z-9-0001.jsonl", 2, False),
        ("parsed-20260531T080000Z-9-0001.jsonl", 2, True),
        ("2026/05/29/00/ev-parsed-1-2026-05-29-00-00-00-abc", None, True),  # Firehose
        ("2026/05/20/00/ev-parsed-1-2026-05-20-00-00-00-abc", None, False),
        ("backfill.jsonl.gz", 0, True),  # no date in the name: may hold anything
    ],
)
def test_files_are_chosen_by_the_date_in_their_name(
    name: str, late_days: int | None, read: bool
) -> None:
    assert relevant(name, date(2026, 5, 29), late_days) is read


def test_other_metrics_go_to_the_map_and_a_malformed_field_reads_as_empty(
    data: Path, tmp_path: Path
) -> None:
    odd = tmp_path / "odd"
    shutil.copytree(data, odd)
    (source,) = (odd / "parsed").glob("*20260529T*")
    first = json.loads(next(line for line in source.open() if '"telemetry"' in line))

    def record(n: int, **fields: object) -> bytes:
        return json.dumps({**first, "id": f"zz-odd-{n}", **fields}).encode() + b"\n"

    with source.open("ab") as f:
        f.write(record(1, metrics={"soc_pct": 50.5, "door_open": True, "tyre_kpa": [220, 221]}))
        f.write(record(2, metrics={"soc_pct": None, "odometer_km": "n/a"}))  # null, mistyped
        f.write(record(3, metrics="not an object", io='{"a":1}', attrs=7))
        f.write(record(4, metrics={"soc_pct": 1.0, "soc_pct ": 2.0}))  # near miss of a name
    compact(odd, tmp_path / "lake")
    by_id = {r["id"]: r for r in rows(partition_file(tmp_path / "lake", "parsed", FIRST_DAY))}
    one, two, three, four = (by_id[f"zz-odd-{n}"] for n in range(1, 5))
    assert one["soc_pct"] == 50.5
    assert one["metrics_other"] == {"door_open": "true", "tyre_kpa": "[220,221]"}
    assert two["soc_pct"] is None and two["odometer_km"] is None
    assert two["metrics_other"] == {}
    assert three["soc_pct"] is None and three["metrics_other"] == {}
    assert three["attrs"] is None
    assert four["soc_pct"] == 1.0 and four["metrics_other"] == {"soc_pct ": "2.0"}
    # Every other record is as before.
    compact(data, tmp_path / "clean")
    clean = {r["id"]: r for r in rows(partition_file(tmp_path / "clean", "parsed", FIRST_DAY))}
    assert {k: v for k, v in by_id.items() if not k.startswith("zz-odd-")} == clean


def test_the_engine_keeps_to_a_memory_limit_that_leaves_the_gateway_its_host() -> None:
    """DuckDB takes 80 % of the machine by default; the lake job runs beside the gateway."""
    physical_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20

    def limit_mib(con: duckdb.DuckDBPyConnection) -> float:
        [(text,)] = con.execute("SELECT current_setting('memory_limit')").fetchall()
        number, unit = str(text).split()
        return float(number) * {"MiB": 1, "GiB": 1024}[unit]

    assert limit_mib(connect(memory_limit_mb=512)) == 512
    assert abs(limit_mib(connect()) - max(256, physical_mib / 4)) < 0.1 * physical_mib / 4


def test_the_latest_copy_of_an_id_wins_then_the_later_file_then_the_later_line(
    data: Path, tmp_path: Path
) -> None:
    """Copies of one id that differ (a replay after a codec fix): one survives, always the same."""
    copies = tmp_path / "copies"
    shutil.copytree(data, copies)
    (source,) = (copies / "parsed").glob("*20260529T*")
    first = json.loads(next(line for line in source.open() if '"telemetry"' in line))

    def record(id_: str, soc: float, received_at: str = first["received_at"]) -> bytes:
        metrics = {**first["metrics"], "soc_pct": soc}
        fields = {"id": id_, "metrics": metrics, "received_at": received_at}
        return json.dumps({**first, **fields}).encode() + b"\n"

    later_file = copies / "parsed" / "parsed-20260529T120000Z-7-0001.jsonl"
    with source.open("ab") as f:
        f.write(record("zz-received", 1.0, "2026-05-29T23:59:59.000Z"))  # received last: wins
        f.write(record("zz-file", 3.0))
        f.write(record("zz-line", 5.0))
        f.write(record("zz-line", 6.0))  # same file, same time: the later line wins
    later_file.write_bytes(
        record("zz-received", 2.0) + record("zz-file", 4.0)  # the later file wins a tie
    )
    compact(copies, tmp_path / "lake")
    by_id = {r["id"]: r for r in rows(partition_file(tmp_path / "lake", "parsed", FIRST_DAY))}
    assert {i: by_id[i]["soc_pct"] for i in ("zz-received", "zz-file", "zz-line")} == {
        "zz-received": 1.0,
        "zz-file": 4.0,
        "zz-line": 6.0,
    }


def test_the_engine_threads_do_not_change_the_bytes(data: Path, tmp_path: Path) -> None:
    """Read, deduplicated and sorted in parallel or not, a day is the same file."""
    dirty = tmp_path / "dirty"
    shutil.copytree(data, dirty)
    for stream in STREAMS:
        (source,) = (dirty / stream).glob(f"*{FIRST_DAY.replace('-', '')}*")
        with source.open("ab") as f:
            f.writelines(source.read_bytes().splitlines(keepends=True)[::3])
    compact(dirty, tmp_path / "one", FIRST_DAY, "--threads", "1")
    compact(dirty, tmp_path / "two", FIRST_DAY, "--threads", "2")
    assert outputs(tmp_path / "one") == outputs(tmp_path / "two")
