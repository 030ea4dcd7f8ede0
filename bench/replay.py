"""Replay throughput: raw records/s per core from local gzip files into the local sink.

Run: ``.venv/bin/python bench/replay.py [--records 200000] [--runs 5]``. Builds gzip files of
EVB1 telemetry raw records (as the local sink or Firehose would hold them), then times
``gateway replay`` pinned to one core, median of several runs, as CPU seconds of the whole
process (its sink thread included). Start-up (imports, settings, codec registry) costs ~0.5 CPU-s
whatever the input, so each run also times a replay of an empty directory and the per-record
rate is ``records / (CPU of the archive - CPU of the empty replay)``; the whole-process rate is
shown too.
Baseline in the same run: reading and JSON-decoding the same gzip lines without replaying them
(the I/O and parsing floor).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from decode import evb1_frames  # noqa: E402

GATEWAY = str(Path(sys.executable).with_name("gateway"))


def make_archive(directory: Path, records: int) -> None:
    frames = evb1_frames(4096)
    lines = []
    for i in range(records):
        lines.append(
            json.dumps(
                {
                    "schema": "ev.raw/1",
                    "id": f"{1767225600000 + i // 100:012x}00000001{i % 100:06x}",
                    "device_id": f"{356307040000000 + i % 1000}",
                    "codec": "evb1",
                    "transport": "tcp",
                    "peer": "10.0.0.1:4000",
                    "received_at": "2026-01-01T00:00:00.000Z",
                    "payload": base64.b64encode(frames[i % len(frames)]).decode(),
                }
            ).encode()
        )
    per_file = 10_000
    for n in range(0, records, per_file):
        (directory / f"raw-{n // per_file:04d}.jsonl.gz").write_bytes(
            gzip.compress(b"\n".join(lines[n : n + per_file]) + b"\n")
        )


def floor_rate(directory: Path) -> float:
    decoder = msgspec.json.Decoder()
    start, n = time.process_time(), 0
    for path in sorted(directory.glob("*.gz")):
        with gzip.open(path, "rb") as f:
            for line in f:
                decoder.decode(line)
                n += 1
    return n / (time.process_time() - start)


def replay_cpu_s(cpu: str, inputs: Path, out: Path) -> tuple[float, dict[str, object]]:
    """CPU seconds of one ``gateway replay`` pinned to ``cpu``, and its summary line."""
    before = os.times()
    result = subprocess.run(
        ["taskset", "-c", cpu, GATEWAY, "replay", str(inputs), "--data-dir", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    after = os.times()
    cpu_s = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    summary: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return cpu_s, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()
    cpu = str(min(os.sched_getaffinity(0)))
    os.sched_setaffinity(0, {int(cpu)})
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        archive, empty = Path(tmp) / "archive", Path(tmp) / "empty"
        archive.mkdir()
        empty.mkdir()
        make_archive(archive, args.records)
        floors, startups, totals = [], [], []
        for _ in range(args.runs):
            floors.append(floor_rate(archive))
            out = Path(tmp) / "out"
            startup_s, _ = replay_cpu_s(cpu, empty, out)
            total_s, summary = replay_cpu_s(cpu, archive, out)
            assert summary["raw_records"] == summary["parsed_records"] == args.records, summary
            shutil.rmtree(out)  # each run writes ~150 MB; the next starts on a clean disk
            startups.append(startup_s)
            totals.append(total_s)
    floor = statistics.median(floors)
    startup_s = statistics.median(startups)
    rate = args.records / statistics.median(t - s for t, s in zip(totals, startups, strict=True))
    whole = args.records / statistics.median(totals)
    title = f"replay {args.records:,} records from local gzip files, one core"
    rows = [
        ("floor: gunzip + JSON-decode the lines", floor),
        ("gateway replay, start-up subtracted", rate),
        (f"gateway replay, whole process ({startup_s:.2f} s start-up)", whole),
    ]
    print(f"{title:<56} {'records/s':>12} {'ratio':>7}")
    for label, value in rows:
        print(f"{label:<56} {value:>12,.0f} {value / floor:>7.2f}")
    if args.json is not None:
        result = {
            "bench": "replay",
            "args": vars(args),
            "records_per_s": {"floor": floor, "replay": rate, "whole_process": whole},
            "startup_cpu_s": startup_s,
        }
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
