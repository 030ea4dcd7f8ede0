"""Replay throughput: raw records/s per core from local gzip files into the local sink.

Run: ``.venv/bin/python bench/replay.py [--records 50000] [--runs 3]``. Builds gzip files of
EVB1 telemetry raw records (as the local sink or Firehose would hold them), then times
``gateway replay`` pinned to one core, median of several runs. Baseline in the same run: reading
and JSON-decoding the same gzip lines without replaying them (the I/O and parsing floor).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    cpu = str(min(os.sched_getaffinity(0)))
    os.sched_setaffinity(0, {int(cpu)})
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        archive = Path(tmp) / "archive"
        archive.mkdir()
        make_archive(archive, args.records)
        floors, rates = [], []
        for run in range(args.runs):
            floors.append(floor_rate(archive))
            out = Path(tmp) / f"out{run}"
            before = os.times()
            result = subprocess.run(
                ["taskset", "-c", cpu, GATEWAY, "replay", str(archive), "--data-dir", str(out)],
                capture_output=True,
                text=True,
                check=True,
            )
            after = os.times()
            cpu_s = (after.children_user - before.children_user) + (
                after.children_system - before.children_system
            )
            summary = json.loads(result.stdout.splitlines()[-1])
            rates.append(summary["raw_records"] / cpu_s)
    floor, rate = statistics.median(floors), statistics.median(rates)
    print(f"{'replay from local gzip files, one core':<44} {'records/s':>12} {'ratio':>7}")
    print(f"{'floor: gunzip + JSON-decode the lines':<44} {floor:>12,.0f} {1.0:>7.2f}")
    print(f"{'gateway replay (decode, parsed JSON, sink)':<44} {rate:>12,.0f} {rate / floor:>7.2f}")


if __name__ == "__main__":
    main()
