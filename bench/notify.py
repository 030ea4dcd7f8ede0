"""Fault notification latency: frame arrival → notification accepted, under ingest load.

Run: ``.venv/bin/python bench/notify.py [--runs 3] [--seconds 5]``.

The gateway (pinned to CPU 0, default rules, a webhook target) first takes the ACK-clocked flood
of bench/ingest.py to find its peak; then, for 50 % and 90 % of that peak, paced EVB1 telemetry
runs while one more device sends a critical EVB1 FAULT every ``--fault-interval-ms``. Each
fault's notification is timed twice against the moment its frame was written to the socket:
``queued`` = its ACK came back (under ``delivered`` the ACK waits for the notification's fsync
in notifications/, and for the frame's raw and parsed batches), and ``webhook`` = the webhook
receiver (in this process, on CPU 1 with the load) got the signed POST. The FAULT's value field
carries a sequence number, so each POST is matched to its frame. Baseline in the same run: the
same probes with no load. Medians of ``--runs`` runs per row; the max is the largest seen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import uvloop
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from decode import evb1_frames  # noqa: E402
from ingest import Server, measure  # noqa: E402
from loadgen import ack_latencies, evb1_frame, login_frame  # noqa: E402

from tests.local_server import free_port  # noqa: E402

FAULT_TYPE, ACK_BYTES = 0x03, 11
PROBE_DEVICE = 999_999  # login_frame index of the fault prober, apart from the load's devices
# Not a rule's code (EVB1-0x0101 would join battery_overtemp and open only once).
FAULT_CODE = 0x0201
SECRET = "bench-webhook-secret-0123456789"


class FaultProbe(asyncio.Protocol):
    """Sends FAULT frames and times their ACKs (by the seq the ACK echoes)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.sent: dict[int, float] = {}
        self.queued: dict[int, float] = {}
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self._buffer += data
        while len(self._buffer) >= ACK_BYTES:
            ack, self._buffer = self._buffer[:ACK_BYTES], self._buffer[ACK_BYTES:]
            (seq,) = struct.unpack_from(">H", ack, 4)
            if seq in self.sent:
                self.queued.setdefault(seq, now - self.sent[seq])

    def send(self, seq: int) -> None:
        ts = int(time.time())
        body = struct.pack(">IHBBi", ts, FAULT_CODE, 2, 1, seq)  # critical, BMS, value = seq
        assert self.transport is not None
        self.sent[seq] = time.monotonic()
        self.transport.write(evb1_frame(FAULT_TYPE, seq, body))


async def probe_run(
    port: int, receiver_port: int, rate: float, args: argparse.Namespace
) -> tuple[list[float], list[float]]:
    """Fault latencies (queued, webhook) in seconds while ``rate`` frames/s of load run."""
    loop = asyncio.get_running_loop()
    webhook: dict[int, float] = {}
    probe = FaultProbe()

    async def take(request: web.Request) -> web.Response:
        now = time.monotonic()
        note = json.loads(await request.read())
        seq = note["values"]["value"]
        if seq in probe.sent:
            webhook.setdefault(seq, now - probe.sent[seq])
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver_port).start()
    try:
        await loop.create_connection(lambda: probe, "127.0.0.1", port)
        assert probe.transport is not None
        probe.transport.write(login_frame(PROBE_DEVICE))
        await asyncio.sleep(0.5)

        async def faults() -> None:
            await asyncio.sleep(1.0)  # the load's warm-up
            seq = 0
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                seq += 1
                probe.send(seq)
                await asyncio.sleep(args.fault_interval_ms / 1000)

        load = (
            ack_latencies(port, evb1_frames(4096), args.connections, rate, args.seconds)
            if rate
            else asyncio.sleep(args.seconds + 1.0)
        )
        await asyncio.gather(faults(), load)
        await asyncio.sleep(1.0)  # stragglers
        lost = set(probe.sent) - set(webhook)
        if lost:
            print(f"  ({len(lost)} of {len(probe.sent)} faults not seen on the webhook)")
        return list(probe.queued.values()), list(webhook.values())
    finally:
        if probe.transport is not None:
            probe.transport.abort()
        await runner.cleanup()


def one_run(rate: float, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    receiver_port = free_port()
    env = {
        "GATEWAY_NOTIFICATIONS__TARGETS__WEBHOOK__URL": f"http://127.0.0.1:{receiver_port}/",
        "GATEWAY_NOTIFICATIONS__TARGETS__WEBHOOK__SECRET": SECRET,
    }
    with tempfile.TemporaryDirectory(prefix="notify-") as tmp:
        server = Server("gateway", Path(tmp), env)
        try:
            os.sched_setaffinity(0, {1})
            return uvloop.run(probe_run(server.port, receiver_port, rate, args))
        finally:
            server.stop()


def quantiles(samples: list[float]) -> tuple[float, float, float]:
    samples = sorted(samples)
    return (
        samples[len(samples) // 2] * 1e3,
        samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e3,
        samples[-1] * 1e3,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--window", type=int, default=8, help="un-ACKed frames per connection")
    ap.add_argument("--fault-interval-ms", type=float, default=20.0)
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs 2 CPUs: the gateway on one, the load and receiver on the other")
    args.batch = 1
    peak = statistics.median(measure("gateway", args, 1)["fps"] for _ in range(args.runs))
    print(f"gateway peak ingest (ACK-clocked flood, 1 frame per write): {peak:,.0f} frames/s\n")
    header = f"{'load':<22} {'faults':>6}  {'queued (ACK) p50/p99/max ms':>28}  "
    print(header + f"{'webhook p50/p99/max ms':>24}")
    for label, share in (("none (baseline)", 0.0), ("50 % of peak", 0.5), ("90 % of peak", 0.9)):
        rows = [one_run(peak * share, args) for _ in range(args.runs)]
        count = statistics.median(len(queued) for queued, _ in rows)
        cells = []
        for column in (0, 1):
            stats = [quantiles(row[column]) for row in rows if row[column]]
            p50 = statistics.median(s[0] for s in stats)
            p99 = statistics.median(s[1] for s in stats)
            worst = max(s[2] for s in stats)
            cells.append(f"{p50:6.1f} /{p99:6.1f} /{worst:6.1f}")
        rate = f"{label} ({peak * share:,.0f}/s)" if share else label
        print(f"{rate:<22} {count:>6.0f}  {cells[0]:>28}  {cells[1]:>24}")


if __name__ == "__main__":
    main()
