"""Journal-first delivery (issue 15): ACK latency against fsync, one MQTT client's PUBACK rate,
shipping drain rate against the ingest rate.

Run: ``.venv/bin/python bench/journal.py [--runs 3] [--seconds 3]`` (part of ``make bench``).

Servers run on CPU 0, the load and the stub Kinesis endpoint (bench/kinesis_stub.py) on CPU 1;
every figure is the median of ``--runs`` runs, each row's baseline is measured in the same run:

1. Peak: ``gateway run`` (journaled, local journal only) under bench/ingest.py's ACK-clocked
   flood, one frame per write. Then ACK latency at half that rate (bench/ingest.py's paced
   probe): ``journaled`` against the fsync latency of appending ``--fsync-bytes`` batches to a
   file beside the data directories (same filesystem, pwrite + fsync as the journal does);
   ``accepted`` (ACK once decoded, no journal wait: the floor of loop, pipeline and load
   generator) beside it; ``delivered`` with Kinesis answering every PutRecords in
   ``--kinesis-delay-ms`` (ACKs wait for the shipper: the Kinesis-coupled behaviour of before
   the journal), against ``journaled``.
2. One MQTT 3.1.1 client publishing one QoS 1 message at a time, the next once its PUBACK came
   (bench/mqtt.py's publisher with a window of 1): the gateway under ``journaled`` against
   mosquitto (no persistence) doing the same.
3. Drain: the journal the peak run filled is the backlog. Cursors at 0 for the raw and parsed
   shippers, the gateway starts again with Kinesis configured (the stub answers at once, 4
   shards, rate limit 1000 % as in bench/kinesis.py: the client is measured, not the limiter);
   PutRecords answers are held until the gateway is up, then user records shipped per CPU-second
   of the gateway until no shipper lags (its metrics, polled from CPU 1), against the peak run's
   frames per CPU-second times the user records (raw + parsed lines) each frame made.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import mqtt  # noqa: E402
from ingest import Server, ack_percentiles, cpu_seconds, flood  # noqa: E402
from kinesis_stub import start_stub  # noqa: E402

from gateway.journal.cursor import Cursor, cursor_path  # noqa: E402
from gateway.journal.reader import SegmentReader  # noqa: E402
from gateway.journal.segments import list_segments  # noqa: E402
from gateway.journal.store import series_prefix  # noqa: E402

SHIPPED = ("raw", "parsed")  # the record classes a Kinesis sink ships
DRAIN_TIMEOUT_S = 300.0
POLL_S = 0.1


def fsync_percentiles(directory: Path, batch_bytes: int, seconds: float) -> tuple[float, float]:
    """p50 and p99 (ms) of appending ``batch_bytes`` to a file in ``directory`` and fsyncing it,
    back to back for ``seconds``."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    data = b"x" * (batch_bytes - 1) + b"\n"
    samples, offset = [], 0
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            os.pwrite(fd, data, offset)
            os.fsync(fd)
            samples.append(time.perf_counter() - start)
            offset += batch_bytes
    finally:
        os.close(fd)
        path.unlink()
    samples.sort()
    return samples[len(samples) // 2] * 1e3, samples[int(len(samples) * 0.99)] * 1e3


def gateway_config(ack_policy: str, kinesis: str | None = None) -> str:
    """Settings of a gateway with one EVB1 listener; its raw and parsed records ship to the
    ``kinesis`` endpoint if given."""
    listener = (
        "[[listeners]]\ncodec = 'evb1'\nhost = '127.0.0.1'\nport = 0\n"
        f"ack_policy = '{ack_policy}'\n"
    )
    if kinesis is None:
        return listener
    return listener + (
        f"[sink.kinesis]\nregion = 'us-east-1'\nendpoint_url = '{kinesis}'\n"
        "rate_limit_pct = 1000\n"
        "[sink.kinesis.raw]\nname = 'bench-raw'\n[sink.kinesis.parsed]\nname = 'bench-parsed'\n"
    )


SHIPPED_RECORDS = "gateway_shipper_shipped_records_total"  # records the targets confirmed
LAG_BYTES = "gateway_shipper_lag_bytes"  # journal bytes they have not
WRITE_S, WRITES = "gateway_sink_write_seconds_sum", "gateway_sink_write_seconds_count"
BATCHES, RECORDS = "gateway_sink_batches_total", "gateway_sink_records_total"


def scrape(url: str) -> dict[str, float]:
    """Every sample of the gateway's metrics, summed over labels, by sample name."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def journal_records(data_dir: Path, stream: str) -> int:
    """Records (lines) in ``stream``'s series of ``gateway run`` under ``data_dir``."""
    prefix = series_prefix(stream, None)
    segments = list_segments(data_dir / stream, prefix)
    if not segments:
        return 0
    reader = SegmentReader(data_dir / stream, prefix)
    try:
        return reader.count(segments[0].base, segments[-1].end)
    finally:
        reader.close()


def drain(server: Server, release: Path, backlog: int) -> dict[str, float]:
    """Remove ``release`` (the stub holds PutRecords answers while it exists), then poll the
    gateway's metrics until no shipper lags: records shipped per CPU-second and per second.
    Raises RuntimeError unless exactly the ``backlog`` records were shipped meanwhile."""
    before = scrape(server.metrics)
    cpu0, start = cpu_seconds(server.proc.pid), time.monotonic()
    release.unlink()
    while (now := scrape(server.metrics))[LAG_BYTES] > 0:
        if time.monotonic() - start > DRAIN_TIMEOUT_S:
            raise RuntimeError(f"backlog not drained in {DRAIN_TIMEOUT_S:g} s")
        time.sleep(POLL_S)
    cpu, wall = cpu_seconds(server.proc.pid) - cpu0, time.monotonic() - start
    shipped = now[SHIPPED_RECORDS] - before[SHIPPED_RECORDS]
    if before[SHIPPED_RECORDS] or shipped != backlog:
        raise RuntimeError(f"shipped {before[SHIPPED_RECORDS]:.0f} + {shipped:.0f} of {backlog}")
    return {"drain_per_core": shipped / cpu if cpu else 0.0, "drain_wall": shipped / wall}


def ingest_then_drain(args: argparse.Namespace) -> dict[str, float]:
    """Peak ingest into a fresh journal, then the shippers draining it (module docstring, 1, 3)."""
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        data = Path(tmp) / "data"
        server = Server("gateway", data)
        try:
            peak = flood(server, args, 1)
        finally:
            server.stop()
        raw = journal_records(data, "raw")
        backlog = raw + journal_records(data, "parsed")
        for stream in SHIPPED:
            Cursor(cursor_path(data, series_prefix(stream, None), "kinesis")).save(0)
        release = Path(tmp) / "hold"
        release.touch()
        stub, endpoint = start_stub(1, hold_while_exists=release)
        config = Path(tmp) / "drain.toml"
        config.write_text(gateway_config("journaled", endpoint))
        try:
            server = Server("gateway", data, config=config)
            try:
                shipped = drain(server, release, backlog)
            finally:
                server.stop()
        finally:
            stub.kill()
            stub.wait()
    return {
        "peak_fps": peak["fps"],
        "ingest_records_per_core": peak["per_core"] * backlog / raw,
        "records_per_frame": backlog / raw,
        **shipped,
    }


def ack_latency(args: argparse.Namespace, rate: float, config: str) -> dict[str, float]:
    """ACK latency p50 and p99 (ms) of a gateway with settings ``config`` at ``rate`` frames/s;
    its journal's batch writes meanwhile (its metrics): mean ms and records per batch."""
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        path = Path(tmp) / "gateway.toml"
        path.write_text(config)
        server = Server("gateway", Path(tmp) / "data", config=path)
        try:
            p50, p99 = ack_percentiles(server, args, rate)
            sums = scrape(server.metrics)
        finally:
            server.stop()
    return {
        "p50": p50,
        "p99": p99,
        "write_ms": sums[WRITE_S] / sums[WRITES] * 1e3,
        "batch_records": sums[RECORDS] / sums[BATCHES],
    }


def stop_and_wait(args: argparse.Namespace, kind: str) -> float:
    """Messages/s of one MQTT client with one QoS 1 PUBLISH in flight."""
    one = argparse.Namespace(
        publishers=1, window=1, warmup=args.warmup, seconds=args.seconds, amqtt_python=None
    )
    rate, _ = mqtt.measure(kind, one)
    return rate


class Row(NamedTuple):
    measure: str
    value: float
    baseline: float | None
    aim: str
    met: bool | None  # None: no aim, shown for comparison

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.value / self.baseline


def rows(args: argparse.Namespace, med: Callable[[str], float], rate: float) -> list[Row]:
    delay = f"{args.kinesis_delay_ms:g} ms"
    return [
        Row("peak ingest, journaled, 1 frame/write (frames/s)", med("peak_fps"), None, "", None),
        Row(
            f"ACK p99 at 50 % of peak ({rate:,.0f}/s), journaled vs fsync p99 (ms)",
            med("journaled_p99"),
            med("fsync_p99"),
            "ratio <= 3",
            med("journaled_p99") <= 3 * med("fsync_p99"),
        ),
        Row(
            "ACK p50 at 50 % of peak, journaled vs fsync p50 (ms)",
            med("journaled_p50"),
            med("fsync_p50"),
            "",
            None,
        ),
        Row(
            "ACK p99 at 50 % of peak, accepted (no journal wait) vs fsync p99 (ms)",
            med("accepted_p99"),
            med("fsync_p99"),
            "",
            None,
        ),
        Row(
            f"ACK p99 at 50 % of peak, delivered, Kinesis in {delay} vs journaled (ms)",
            med("delivered_p99"),
            med("journaled_p99"),
            "",
            None,
        ),
        Row(
            f"ACK p50 at 50 % of peak, delivered, Kinesis in {delay} vs journaled (ms)",
            med("delivered_p50"),
            med("journaled_p50"),
            "",
            None,
        ),
        Row(
            "MQTT 1 client, QoS 1 stop-and-wait, journaled vs mosquitto (msg/s)",
            med("mqtt_journaled"),
            med("mqtt_mosquitto"),
            ">= 300/s",
            med("mqtt_journaled") >= 300,
        ),
        Row(
            "shipping drain vs live ingest, user records/s per core",
            med("drain_per_core"),
            med("ingest_records_per_core"),
            "ratio >= 3",
            med("drain_per_core") >= 3 * med("ingest_records_per_core"),
        ),
    ]


def show(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def print_table(table: list[Row]) -> None:
    print("measure | value | baseline | ratio | aim | met?")
    for row in table:
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        print(
            f"{row.measure} | {show(row.value)} | {show(row.baseline)} | {show(row.ratio)} | "
            f"{row.aim or '-'} | {met}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured window of each run")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--connections", type=int, default=2000, help="EVB1 connections")
    ap.add_argument("--window", type=int, default=8, help="un-ACKed frames per connection")
    ap.add_argument("--fsync-bytes", type=int, default=4096, help="bytes per fsync'ed append")
    ap.add_argument("--kinesis-delay-ms", type=float, default=100.0)
    ap.add_argument(
        "--tmp", type=Path, help="where data directories and the fsync probe go ($TMPDIR)"
    )
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON line there")
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs 2 CPUs: the server on one, the load on the other")
    if args.tmp is not None:
        tempfile.tempdir = str(args.tmp)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDBENCH")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    os.sched_setaffinity(0, {1})
    load_before = os.getloadavg()[0]

    runs: dict[str, list[float]] = {}

    def record(results: dict[str, float]) -> None:
        for name, value in results.items():
            runs.setdefault(name, []).append(value)

    def med(name: str) -> float:
        return statistics.median(runs[name])

    for _ in range(args.runs):
        record(ingest_then_drain(args))
    rate = med("peak_fps") / 2
    stub, endpoint = start_stub(1, delay_s=args.kinesis_delay_ms / 1000)
    delivered = gateway_config("delivered", endpoint)
    try:
        for _ in range(args.runs):  # interleaved, so drifting co-tenant load hits all alike
            with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
                fsync = fsync_percentiles(Path(tmp), args.fsync_bytes, args.seconds)
            record({"fsync_p50": fsync[0], "fsync_p99": fsync[1]})
            for policy, config in (
                ("accepted", gateway_config("accepted")),
                ("journaled", gateway_config("journaled")),
                ("delivered", delivered),
            ):
                latency = ack_latency(args, rate, config)
                record({f"{policy}_{name}": value for name, value in latency.items()})
            record(
                {
                    "mqtt_journaled": stop_and_wait(args, "gateway-journaled"),
                    "mqtt_mosquitto": stop_and_wait(args, "mosquitto"),
                }
            )
    finally:
        stub.kill()
        stub.wait()

    table = rows(args, med, rate)
    print(
        f"gateway on CPU 0, load and stub Kinesis on CPU 1; median of {args.runs} runs x "
        f"{args.seconds:g} s; data and fsync probe under {tempfile.gettempdir()}; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (co-tenants "
        "share both cores: latencies include their scheduling)"
    )
    print_table(table)
    print(
        f"(journaled at 50 % of peak: batch writes {med('journaled_write_ms'):.2f} ms on "
        f"average, {med('journaled_batch_records'):.1f} records per batch, raw and parsed each "
        f"in its own series; user records per frame {med('records_per_frame'):.2f}, raw + "
        f"parsed; drain {med('drain_wall'):,.0f} records/s of wall time)"
    )
    line = json.dumps(
        {
            "bench": "journal",
            "runs": args.runs,
            "seconds": args.seconds,
            "rows": [{**row._asdict(), "ratio": row.ratio} for row in table],
            "medians": {name: med(name) for name in sorted(runs)},
        }
    )
    print(line)
    if args.json is not None:
        args.json.write_text(line)


if __name__ == "__main__":
    main()
