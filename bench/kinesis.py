"""The Kinesis sink's cost per user record, into an endpoint that answers instantly.

Run: ``.venv/bin/python bench/kinesis.py [--seconds 3] [--runs 3]``.

The sink (``gateway.sinks.kinesis.KinesisSink``: aggregation, JSON, base64, signing, HTTP —
everything but the network) runs on CPU 0; a stub Kinesis endpoint on CPU 1 answers every
PutRecords with success at once, so the gateway, not an emulator, is measured. Rows: user
records/s per core and CPU µs per user record with aggregation on and off, PUT payload units per
1,000 user records; each also with PutRecords through botocore's client instead of the sink's
lean path (``KinesisSink(lean=False)``), the same-run baseline of the lean path (issue 17).
Baseline in the same run: ``aws_kinesis_agg``'s ``RecordAggregator`` packing the same records
(aggregation alone, no sending), next to our sink doing aggregation *and* sending.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from decode import measure  # noqa: E402
from kinesis_agg import aggregate_with_library, user_records  # noqa: E402
from kinesis_stub import start_stub  # noqa: E402

from gateway.journal.settings import LocalSinkSettings  # noqa: E402
from gateway.sinks.kinesis import KinesisSink  # noqa: E402
from gateway.sinks.settings import KinesisSettings, KinesisStreamSettings  # noqa: E402


async def run_sink(
    endpoint: str,
    aggregate: bool,
    lean: bool,
    records: list[tuple[str, bytes]],
    seconds: float,
    runs: int,
) -> tuple[float, float]:
    """Median user records per CPU-second through the sink, and PUT payload units per 1,000."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-kinesis-{os.getpid()}"
    settings = KinesisSettings(
        raw=KinesisStreamSettings(name="bench-raw", aggregate=aggregate),
        parsed=KinesisStreamSettings(name="bench-parsed", aggregate=aggregate),
        region="us-east-1",
        endpoint_url=endpoint,
        rate_limit_pct=1000,  # the stub is not a shard: measure the client, not the limiter
    )
    sink = KinesisSink(settings, LocalSinkSettings(data_dir=tmp), lean=lean)
    await sink.open()
    keys = [k for k, _ in records]
    data = [d for _, d in records]
    batch = 5000
    rates = []
    try:
        for _ in range(runs):
            done = 0
            start = time.process_time()
            while (elapsed := time.process_time() - start) < seconds:
                at = done % (len(data) - batch)
                await sink.write("raw", data[at : at + batch], keys[at : at + batch])
                done += batch
            rates.append(done / elapsed)
        stats = sink.stats["raw"]
        units = stats.payload_units / stats.user_records * 1000
    finally:
        await sink.close()
    rates.sort()
    return rates[len(rates) // 2], units


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDBENCH")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    cpus = sorted(os.sched_getaffinity(0))
    stub, endpoint = start_stub(cpus[-1])
    os.sched_setaffinity(0, {cpus[0]})
    records = user_records(n=20_000)
    try:
        library = measure(
            lambda: len(records) if aggregate_with_library(records) else 0, args.seconds, args.runs
        )
        sinks: dict[str, float] = {}  # user records/s by aggregation and PutRecords path
        rows: list[tuple[str, float, float | None]] = [
            ("aws-kinesis-agg RecordAggregator (aggregation only)", library, None)
        ]
        for label, aggregate, lean in (
            ("sink, aggregated (KPL), shard-aware", True, True),
            ("  same, PutRecords through botocore", True, False),
            ("sink, one Kinesis record per user record", False, True),
            ("  same, PutRecords through botocore", False, False),
        ):
            rate, sink_units = uvloop.run(
                run_sink(endpoint, aggregate, lean, records, args.seconds, args.runs)
            )
            rows.append((label, rate, sink_units))
            path = "lean" if lean else "botocore"
            sinks[f"{'aggregated' if aggregate else 'single'}_{path}"] = rate
    finally:
        stub.kill()
    print(
        f"{'700 B user records, 1,000 devices, one core':<54} {'rec/s':>10} {'µs/rec':>7} "
        f"{'vs lib':>7} {'units/1k':>9}"
    )
    for label, rate, units in rows:
        units_text = "" if units is None else f"{units:9.1f}"
        print(f"{label:<54} {rate:>10,.0f} {1e6 / rate:>7.2f} {rate / library:>7.2f} {units_text}")
    if args.json is not None:
        result = {
            "bench": "kinesis",
            "args": vars(args),
            "library_per_s": library,
            "user_records_per_s": sinks,
        }
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
