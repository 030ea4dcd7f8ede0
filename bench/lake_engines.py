"""Which embedded engine compacts parsed records fastest: DuckDB, pyarrow or Polars.

Run: ``.venv/bin/python bench/lake_engines.py [--devices N] [--runs R] [--threads T]``. The same
task for each engine, on one file of parsed records from a simulated fleet day
(``gateway.fleet.history``, as live ingest writes them): read the JSON lines with an explicit
schema (position and the known metrics as typed struct fields), drop duplicate ids, sort by
device and time, write one Parquet file, zstd level 1 as the job does. Prints records per CPU
second of this process (every engine thread runs in it; median of the runs, ``--threads``
threads), so a busy shared machine slows the wall clock and not the figure, and each engine
against the fastest, measured in the same run, with the load average. An engine
that is not installed is listed as such: install it (``pip install -c constraints.txt NAME``)
to measure it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DAY_START = 1_780_012_800  # 2026-05-29T00:00:00Z
FLOATS = (
    "speed_kmh",
    "soc_pct",
    "pack_voltage_v",
    "pack_current_a",
    "cell_temp_max_c",
    "odometer_km",
)
BOOLS = ("ignition", "charging", "fast_charge")


def fleet_day(directory: Path, devices: int) -> Path:
    """One simulated day of ``devices`` EVB1 cars; the parsed file's path."""
    from gateway.fleet.history import FleetHistory, HistoryConfig  # noqa: PLC0415
    from gateway.pipeline.registry import CodecRegistry, default_layout_dirs  # noqa: PLC0415

    registry = CodecRegistry.load(default_layout_dirs())
    FleetHistory(HistoryConfig(devices, DAY_START, 1), registry.create, None).run(directory)
    return next((directory / "parsed").iterdir())


def cpu_s() -> float:
    """CPU seconds of this process so far, every thread's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def duckdb_compact(source: Path, target: Path, threads: int) -> None:
    import duckdb  # noqa: PLC0415

    metrics = ", ".join([*(f"{m} DOUBLE" for m in FLOATS), *(f"{b} BOOLEAN" for b in BOOLS)])
    columns = {
        "id": "VARCHAR",
        "device_id": "VARCHAR",
        "kind": "VARCHAR",
        "ts": "TIMESTAMP",
        "received_at": "TIMESTAMP",
        "position": "STRUCT(lat DOUBLE, lon DOUBLE, speed_kmh DOUBLE, valid BOOLEAN)",
        "metrics": f"STRUCT({metrics})",
    }
    with duckdb.connect(config={"threads": threads}) as con:
        con.execute(
            f"""COPY (
                SELECT * FROM read_json(?, format = 'newline_delimited', columns = {columns})
                QUALIFY row_number() OVER (PARTITION BY id ORDER BY received_at) = 1
                ORDER BY device_id, ts, id
            ) TO '{target}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)""",
            [str(source)],
        )


def pyarrow_compact(source: Path, target: Path, threads: int) -> None:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.json as pj  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    pa.set_cpu_count(threads)
    metrics = [
        *(pa.field(m, pa.float64()) for m in FLOATS),
        *(pa.field(b, pa.bool_()) for b in BOOLS),
    ]
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("device_id", pa.string()),
            ("kind", pa.string()),
            ("ts", pa.timestamp("ms")),
            ("received_at", pa.timestamp("ms")),
            (
                "position",
                pa.struct(
                    [
                        ("lat", pa.float64()),
                        ("lon", pa.float64()),
                        ("speed_kmh", pa.float64()),
                        ("valid", pa.bool_()),
                    ]
                ),
            ),
            ("metrics", pa.struct(metrics)),
        ]
    )
    table = pj.read_json(
        source,
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )
    # First row of each id: group_by keeps the first index per key.
    table = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    first = table.group_by("id", use_threads=False).aggregate([("_row", "min")])
    table = table.take(first["_row_min"]).drop_columns(["_row"])
    table = table.sort_by([("device_id", "ascending"), ("ts", "ascending"), ("id", "ascending")])
    pq.write_table(table, target, compression="zstd", compression_level=1)


def polars_compact(source: Path, target: Path, threads: int) -> None:
    import os  # noqa: PLC0415

    os.environ["POLARS_MAX_THREADS"] = str(threads)  # read once, at import
    import polars as pl  # noqa: PLC0415

    metrics = [
        *(pl.Field(m, pl.Float64) for m in FLOATS),
        *(pl.Field(b, pl.Boolean) for b in BOOLS),
    ]
    schema = {
        "id": pl.String,
        "device_id": pl.String,
        "kind": pl.String,
        "ts": pl.String,
        "received_at": pl.String,
        "position": pl.Struct(
            {"lat": pl.Float64, "lon": pl.Float64, "speed_kmh": pl.Float64, "valid": pl.Boolean}
        ),
        "metrics": pl.Struct(metrics),
    }
    frame = pl.read_ndjson(source, schema=schema, ignore_errors=False)
    frame = frame.with_columns(
        pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%S%.3fZ", time_unit="ms"),
        pl.col("received_at").str.to_datetime("%Y-%m-%dT%H:%M:%S%.3fZ", time_unit="ms"),
    )
    frame = frame.unique("id", keep="first", maintain_order=True).sort(["device_id", "ts", "id"])
    frame.write_parquet(target, compression="zstd", compression_level=1)


ENGINES: dict[str, tuple[str, Callable[[Path, Path, int], None]]] = {
    "duckdb": ("duckdb", duckdb_compact),
    "pyarrow": ("pyarrow", pyarrow_compact),
    "polars": ("polars", polars_compact),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--input", type=Path, help="a parsed-records file instead of a new fleet day")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = args.input or fleet_day(work / "fleet", args.devices)
        records = sum(1 for _ in source.open("rb"))
        size_mb = source.stat().st_size / 1e6
        print(
            f"{records:,} parsed records, {size_mb:.1f} MB of JSON lines; "
            f"{args.threads} thread(s), median of {args.runs} runs"
        )
        results: dict[str, Any] = {}
        for name, (module, compact) in ENGINES.items():
            if importlib.util.find_spec(module) is None:
                results[name] = None
                continue
            times = []
            for run in range(args.runs):
                target = work / f"{name}-{run}.parquet"
                began = cpu_s()
                compact(source, target, args.threads)
                times.append(cpu_s() - began)
            version = importlib.import_module(module).__version__
            results[name] = (version, statistics.median(times), target.stat().st_size)
        best = min((r[1] for r in results.values() if r is not None), default=None)
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(
            f"{'engine':<10}{'version':>10}{'records/s':>14}{'CPU s':>10}{'parquet MB':>12}"
            f"{'vs best':>9}"
        )
        for name, result in results.items():
            if result is None:
                print(f"{name:<10}{'not installed':>24}")
                continue
            version, seconds, size = result
            assert best is not None
            print(
                f"{name:<10}{version:>10}{records / seconds:>14,.0f}{seconds:>10.3f}"
                f"{size / 1e6:>12.2f}{seconds / best:>8.2f}x"
            )


if __name__ == "__main__":
    main()
