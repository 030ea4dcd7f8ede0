"""``gateway lake`` throughput: compaction rate per core and a day of a big fleet extrapolated.

Run: ``.venv/bin/python bench/lake.py [--devices N] [--runs R]``. Writes one simulated day of N
EVB1 cars at one frame per 10 s (``gateway.fleet.history``: telemetry, heartbeats, CELLS
frames, faults and notifications, as live ingest writes them), then times per stream, with one
engine thread and with two, the median of R runs of:

- ``read``: the baseline — DuckDB parsing the same JSON lines with the same schema into a
  table, nothing else;
- ``compact``: the job (``gateway.lake.compact``: read, keep the day, drop duplicate ids, sort,
  write zstd Parquet).

Rates per core are records per CPU second of this process (DuckDB's threads run in it), so other
work on a shared machine slows the wall clock, not the figure; ``wall/s`` is the elapsed rate.
``read MB/s`` is the JSON text the baseline parses per CPU second (the parsed stream's records
are ~650 bytes: the read alone sets the ceiling). The load average is printed beside them.

The extrapolation is one day of 10,000 vehicles at one frame per 10 s: 86.4 M telemetry frames,
scaled by this sample's records per frame for each stream, in CPU time at the one-thread rate and
on this 2-core machine at the two-thread wall rate, and the daily aggregates over that day's
parsed file from their measured per-record time; then the issue's round figure, 86.4 M parsed
records, at the per-core rate.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.fleet.history import FleetHistory, HistoryConfig
from gateway.lake.compact import StreamInput, compact_stream, connect, json_reader, run
from gateway.lake.daily import write_daily
from gateway.lake.tables import STREAMS, TABLES
from gateway.notify.settings import NotificationSettings
from gateway.pipeline.registry import CodecRegistry, default_layout_dirs

DAY_START = 1_780_012_800  # 2026-05-29T00:00:00Z
DAY = "2026-05-29"
FLEET = 10_000
FRAMES_PER_DAY = 86_400 // 10


def cpu_s() -> float:
    """CPU seconds of this process so far, every thread's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def median_s(action: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median CPU and wall seconds of ``runs`` calls of ``action``."""
    cpu, wall = [], []
    for _ in range(runs):
        began_cpu, began = cpu_s(), time.perf_counter()
        action()
        wall.append(time.perf_counter() - began)
        cpu.append(cpu_s() - began_cpu)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=6)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        registry = CodecRegistry.load(default_layout_dirs())
        config = HistoryConfig(args.devices, DAY_START, 1, faults_per_min=0.01)
        history = FleetHistory(config, registry.create, NotificationSettings().engine())
        history.run(work / "data")
        frames = args.devices * FRAMES_PER_DAY
        print(
            f"{args.devices} EVB1 cars, one simulated day at a frame per 10 s "
            f"({time.perf_counter() - began:.1f} s to write); median of {args.runs} runs"
        )
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(
            f"{'stream':<15}{'records':>10}{'threads':>8}{'read/s/core':>13}{'read MB/s':>10}"
            f"{'compact/s/core':>16}{'wall/s':>10}{'compact/read':>13}"
        )
        rates: dict[str, tuple[int, float, float]] = {}  # records, CPU s, wall s
        parsed_target = work / "parsed.parquet"
        for stream in STREAMS:
            table = TABLES[stream]
            files = tuple(sorted((work / "data" / stream).iterdir()))
            source = StreamInput(work / "data" / stream, files)
            records = sum(f.read_bytes().count(b"\n") for f in files)
            megabytes = sum(f.stat().st_size for f in files) / 1e6
            for threads in (1, 2):
                con = connect(threads, work)
                # Every column parsed and kept (a count alone would let DuckDB skip parsing).
                parse = (
                    f"CREATE OR REPLACE TEMP TABLE b AS {json_reader(table, list(files), 'none')}"
                )
                read_s, _ = median_s(partial(run, con, parse), args.runs)
                target = work / f"{stream}.parquet"
                compact = partial(compact_stream, con, table, source, DAY, target)
                compact_s, compact_wall_s = median_s(compact, args.runs)
                con.close()
                print(
                    f"{stream:<15}{records:>10,}{threads:>8}{records / read_s:>13,.0f}"
                    f"{megabytes / read_s:>10,.0f}{records / compact_s:>16,.0f}"
                    f"{records / compact_wall_s:>10,.0f}{compact_s / read_s:>12.2f}x"
                )
                rates[f"{stream}/{threads}"] = (records, compact_s, compact_wall_s)
            if stream == "parsed":
                (work / "parsed.parquet").replace(parsed_target)
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        con = connect(2, work)
        notes = work / "notifications.parquet"
        daily = partial(write_daily, con, parsed_target, notes, DAY, work / "daily.parquet")
        daily_cpu_s, daily_s = median_s(daily, args.runs)
        parsed_records = rates["parsed/2"][0]
        print(
            f"daily aggregates: {parsed_records / daily_cpu_s:,.0f} parsed records/s per core, "
            f"{parsed_records / daily_s:,.0f}/s wall (2 threads)"
        )
        frames_day = FLEET * FRAMES_PER_DAY
        print(f"\none day of {FLEET:,} vehicles at a frame per 10 s ({frames_day:,} frames):")
        print(
            f"  {'':<14}{'records':>16}{'per core':>16}{'CPU, 1 thread':>15}"
            f"{'2 idle cores':>15}{'wall here':>15}"
        )
        # Two threads cost more CPU per record than one; "2 idle cores" is their CPU time halved
        # (both cores busy, nobody else's load), "wall here" what this machine took.
        totals = [0.0, 0.0, 0.0]
        for stream in STREAMS:
            records, cpu_2_s, wall_s = rates[f"{stream}/2"]
            per_core = records / rates[f"{stream}/1"][1]
            scale = frames_day / frames
            times = [records * scale / per_core, cpu_2_s * scale / 2, wall_s * scale]
            totals = [t + d for t, d in zip(totals, times, strict=True)]
            print(
                f"  {stream:<14}{records * scale / 1e6:>14.1f} M{per_core:>14,.0f}/s"
                + "".join(f"{t / 60:>11.1f} min" for t in times)
            )
        scale = frames_day / frames
        times = [daily_cpu_s * scale, daily_cpu_s * scale / 2, daily_s * scale]  # 2 threads
        totals = [t + d for t, d in zip(totals, times, strict=True)]
        print(f"  {'daily':<46}" + "".join(f"{t / 60:>11.1f} min" for t in times))
        print(f"  {'total':<46}" + "".join(f"{t / 60:>11.1f} min" for t in totals))
        per_core = parsed_records / rates["parsed/1"][1]
        print(
            f"  {frames_day / 1e6:.1f} M parsed records (one per frame) at {per_core:,.0f}/s "
            f"per core: {frames_day / per_core / 60:.1f} min of CPU "
            f"(the aim, 500,000/s per core: {frames_day / 500_000 / 60:.1f} min)"
        )


if __name__ == "__main__":
    main()
