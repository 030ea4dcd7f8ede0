"""The Kinesis sink's cost per user record, into an endpoint that answers instantly.

Run: ``.venv/bin/python bench/kinesis.py [--seconds 3] [--runs 3]``.

The sink (``gateway.sinks.kinesis.KinesisSink``, aiobotocore, signing, JSON, base64 — everything but
the network) runs on CPU 0; a stub Kinesis endpoint on CPU 1 answers every PutRecords with
success at once, so the gateway, not an emulator, is measured. Rows: user records/s per core
and CPU µs per user record with aggregation on and off, PUT payload units per 1,000 user records.
Baseline in the same run: ``aws_kinesis_agg``'s ``RecordAggregator`` packing the same records
(aggregation alone, no sending), next to our sink doing aggregation *and* sending.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from decode import measure  # noqa: E402
from kinesis_agg import aggregate_with_library, user_records  # noqa: E402

from gateway.sinks.kinesis import KinesisSink  # noqa: E402
from gateway.journal.settings import LocalSinkSettings  # noqa: E402
from gateway.sinks.settings import KinesisSettings, KinesisStreamSettings  # noqa: E402

STUB = """
import asyncio, json, sys
SHARDS = [{"ShardId": f"shardId-{i:012d}", "HashKeyRange": {
    "StartingHashKey": str(i * (2**128 // 4)), "EndingHashKey": str((i + 1) * (2**128 // 4) - 1)},
    "SequenceNumberRange": {"StartingSequenceNumber": "1"}} for i in range(4)]
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            length = 0
            target = b""
            for line in head.split(b"\\r\\n"):
                k, _, v = line.partition(b":")
                if k.lower() == b"content-length": length = int(v)
                if k.lower() == b"x-amz-target": target = v.strip()
            body = await reader.readexactly(length)
            if target.endswith(b"PutRecords"):
                n = body.count(b'"PartitionKey"')
                out = json.dumps({"FailedRecordCount": 0, "Records": [
                    {"SequenceNumber": "1", "ShardId": "shardId-000000000000"}] * n}).encode()
            else:
                out = json.dumps({"Shards": SHARDS}).encode()
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/x-amz-json-1.1\\r\\n"
                         b"Content-Length: " + str(len(out)).encode() + b"\\r\\n\\r\\n" + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


async def run_sink(
    endpoint: str, aggregate: bool, records: list[tuple[str, bytes]], seconds: float, runs: int
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
    sink = KinesisSink(settings, LocalSinkSettings(data_dir=tmp))
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
    args = ap.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDBENCH")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    cpus = sorted(os.sched_getaffinity(0))
    stub = subprocess.Popen(
        ["taskset", "-c", str(cpus[-1]), sys.executable, "-c", STUB], stdout=subprocess.PIPE
    )
    assert stub.stdout is not None
    endpoint = f"http://127.0.0.1:{int(stub.stdout.readline())}"
    os.sched_setaffinity(0, {cpus[0]})
    records = user_records(n=20_000)
    try:
        library = measure(
            lambda: len(records) if aggregate_with_library(records) else 0, args.seconds, args.runs
        )
        rows: list[tuple[str, float, float | None]] = [
            ("aws-kinesis-agg RecordAggregator (aggregation only)", library, None)
        ]
        for label, aggregate in (
            ("sink, aggregated (KPL), shard-aware", True),
            ("sink, one Kinesis record per user record", False),
        ):
            rate, sink_units = uvloop.run(
                run_sink(endpoint, aggregate, records, args.seconds, args.runs)
            )
            rows.append((label, rate, sink_units))
    finally:
        stub.kill()
    print(
        f"{'700 B user records, 1,000 devices, one core':<54} {'rec/s':>10} {'µs/rec':>7} "
        f"{'vs lib':>7} {'units/1k':>9}"
    )
    for label, rate, units in rows:
        units_text = "" if units is None else f"{units:9.1f}"
        print(f"{label:<54} {rate:>10,.0f} {1e6 / rate:>7.2f} {rate / library:>7.2f} {units_text}")


if __name__ == "__main__":
    main()
