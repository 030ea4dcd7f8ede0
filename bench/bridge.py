"""MQTT bridging A -> B: ``gateway bridge`` against mosquitto's own bridge, same brokers, same load.

Run: ``.venv/bin/python bench/bridge.py [--runs 3] [--seconds 5] [--rate 500]``.

Brokers A (the Azure side) and B (the AWS side) are Debian mosquittos on loopback, plain TCP,
pinned with this load generator to CPU 1; the bridge under test is pinned to CPU 0. Bridges:
``gateway bridge`` (source session on A, in-flight window 64, one destination connection with 20
PUBLISHes in flight, no rate limit; MQTT 5 — with the message id and ``bridged-by`` properties —
or 3.1.1), and a third mosquitto configured as a bridge (research §1: one connection pulling
``src/#`` from A at QoS 1, one pushing to B as ``aws/in/#``; 20 in flight each, its default).
Both map ``src/<tag>/t`` to ``aws/in/<tag>/t`` at QoS 1. mosquitto acknowledges A as soon as the
message is in its memory; the gateway only after B's PUBACK (at-least-once), which costs it.

Load: 64-byte QoS 1 messages published on A carrying their send time; a subscriber on B takes
them at QoS 1. Throughput: a closed loop keeping ``--window`` messages between publish on A and
arrival at B, counted at B over ``--seconds`` after ``--warmup``. Latency: an open loop at
``--rate`` messages per second, publish on A to arrival at B, p50 and p99. Median of ``--runs``
interleaved runs; the bridge's CPU is its CPU seconds per second during the throughput window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import cast

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import GATEWAY, cpu_seconds  # noqa: E402

from parser.mqtt.client import MqttClientConnection  # noqa: E402
from parser.mqtt.encode import encode, encode_pubacks, encode_publish  # noqa: E402
from parser.mqtt.packets import MQTT_311, Connect, Publish, Subscribe, Subscription  # noqa: E402
from tests.local_server import free_port  # noqa: E402
from tests.mqtt_broker import BrokerListener, MosquittoBroker  # noqa: E402

PAYLOAD_BYTES = 64
STAMP = struct.Struct(">8sQ")  # run tag, send time (monotonic ns)
KINDS = ("mosquitto", "gateway-5", "gateway-3.1.1")
READY_TIMEOUT_S = 30.0


def gateway_config(tmp: Path, a: int, b: int, kind: str, run: int) -> list[str]:
    protocol = kind.split("-")[1]
    config = tmp / "bridge.toml"
    config.write_text(
        f"""
[metrics]
enabled = false
[health]
enabled = false
[sink.local]
data_dir = "{tmp / "data"}"
[bridge]
in_flight = 64
[[bridge.sources]]
name = "a"
host = "127.0.0.1"
port = {a}
protocol = "{protocol}"
client_id = "bench-gw-{run}"
session_expiry_s = 1
subscriptions = [{{ filter = "src/#", qos = 1 }}]
[[bridge.destinations]]
name = "b"
host = "127.0.0.1"
port = {b}
protocol = "{protocol}"
client_id_prefix = "bench-gw-out-{run}"
rate_per_connection = 1e9
burst = 1000
[[bridge.routes]]
name = "r"
source = "a"
topic = "src/{{device_id}}/t"
destination = "b"
destination_topic = "aws/in/{{device_id}}/t"
"""
    )
    return [GATEWAY, "bridge", "--config", str(config)]


def mosquitto_config(tmp: Path, a: int, b: int, run: int) -> list[str]:
    config = tmp / "bridge.conf"
    config.write_text(
        f"""user root
persistence false
log_dest none
listener {free_port()} 127.0.0.1
allow_anonymous true
connection from-a
address 127.0.0.1:{a}
remote_clientid bench-mq-in-{run}
cleansession true
restart_timeout 1 5
topic src/# in 1
connection to-b
address 127.0.0.1:{b}
remote_clientid bench-mq-out-{run}
cleansession true
restart_timeout 1 5
topic # out 1 src/ aws/in/
"""
    )
    return ["/usr/sbin/mosquitto", "-c", str(config)]


class Side(asyncio.Protocol):
    """One MQTT 3.1.1 client connection of the load generator (publisher on A, reader on B).

    The reader counts arrivals per run tag and keeps their latencies; ``on_arrival`` runs once
    per read, so the closed loop tops the window up as soon as messages come through."""

    def __init__(self, client_id: str, reader: bool) -> None:
        self.client_id = client_id
        self.codec = MqttClientConnection(MQTT_311)
        self.ready = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.latencies: dict[bytes, list[int]] = defaultdict(list)  # ns, per run tag
        self.on_arrival: Callable[[], None] = lambda: None
        self.next_id = 0
        self.reader = reader

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tcp = cast(asyncio.Transport, transport)
        tcp.write(encode(Connect(MQTT_311, self.client_id), MQTT_311))
        if self.reader:
            subscribe = Subscribe(1, (Subscription("aws/in/#", 1),))
            tcp.write(encode(subscribe, MQTT_311))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        ids = []
        for packet in self.codec.feed(data):
            if not self.ready.done():
                self.ready.set_result(None)
            if isinstance(packet, Publish):
                tag, sent = STAMP.unpack_from(packet.payload)
                self.latencies[tag].append(now - sent)
                ids.append(packet.packet_id)
        if ids and self.transport is not None:
            self.transport.write(encode_pubacks(ids))
            self.on_arrival()

    def arrived(self, tag: bytes) -> int:
        return len(self.latencies[tag])

    def publish(self, tag: bytes, count: int) -> None:
        assert self.transport is not None
        out = []
        payload = STAMP.pack(tag, time.monotonic_ns()).ljust(PAYLOAD_BYTES, b".")
        topic = f"src/{tag.decode()}/t"
        for _ in range(count):
            self.next_id = self.next_id % 0xFFFF + 1
            out.append(encode_publish(topic, payload, 1, self.next_id))
        self.transport.write(b"".join(out))


async def connect(port: int, client_id: str, reader: bool) -> Side:
    loop = asyncio.get_running_loop()
    _, side = await loop.create_connection(lambda: Side(client_id, reader), "127.0.0.1", port)
    await side.ready
    return side


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(what)
        await asyncio.sleep(0.01)


async def load(a: int, b: int, args: argparse.Namespace, run: int, pid: int) -> dict[str, float]:
    publisher = await connect(a, f"bench-pub-{run}", reader=False)
    reader = await connect(b, f"bench-sub-{run}", reader=True)
    # Probe until a message makes it A -> bridge -> B (the bridge is connected both ways).
    probe = b"probe___"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not reader.arrived(probe):
        if time.monotonic() > deadline:
            raise RuntimeError("nothing came through the bridge")
        publisher.publish(probe, 1)
        await asyncio.sleep(0.2)

    # Throughput: a closed loop of --window messages between A and B.
    tag = f"tput{run:04d}".encode()
    sent = [0]

    def top_up() -> None:
        missing = args.window - (sent[0] - reader.arrived(tag))
        if missing > 0:
            publisher.publish(tag, missing)
            sent[0] += missing

    reader.on_arrival = top_up
    top_up()
    await asyncio.sleep(args.warmup)
    count0, cpu0, mark = reader.arrived(tag), cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(args.seconds)
    wall = time.monotonic() - mark
    forwarded = (reader.arrived(tag) - count0) / wall
    cpu = (cpu_seconds(pid) - cpu0) / wall
    reader.on_arrival = lambda: None
    await wait_until(lambda: reader.arrived(tag) >= sent[0], "throughput backlog did not clear")

    # Latency: an open loop at --rate.
    tag = f"late{run:04d}".encode()
    began, count = time.monotonic(), 0
    while (elapsed := time.monotonic() - began) < args.seconds:
        due = int(elapsed * args.rate) - count
        if due > 0:
            publisher.publish(tag, due)
            count += due
        await asyncio.sleep(0.001)
    await wait_until(lambda: reader.arrived(tag) >= count, "latency messages missing")
    latencies = sorted(reader.latencies[tag])
    for side in (publisher, reader):
        assert side.transport is not None
        side.transport.close()
    return {
        "msgs": forwarded,
        "cpu": cpu,
        "p50": latencies[len(latencies) // 2] / 1e6,
        "p99": latencies[int(len(latencies) * 0.99)] / 1e6,
    }


def measure(kind: str, a: int, b: int, args: argparse.Namespace, run: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp:
        if kind == "mosquitto":
            command = mosquitto_config(Path(tmp), a, b, run)
        else:
            command = gateway_config(Path(tmp), a, b, kind, run)
        env = {**os.environ, "GATEWAY_LOG__LEVEL": "warning", "GATEWAY_LOG__FORMAT": "json"}
        proc = subprocess.Popen(
            ["taskset", "-c", "0", *command],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp,
        )  # fmt: skip
        try:
            return uvloop.run(load(a, b, args, run, proc.pid))
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--window", type=int, default=256, help="messages between A and B")
    ap.add_argument("--rate", type=float, default=500.0, help="msg/s of the latency phase")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs 2 CPUs: the bridge on one, brokers and load on the other")
    os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory(prefix="bench-brokers-") as tmp:
        brokers = [MosquittoBroker(Path(tmp) / name, [BrokerListener()]) for name in ("a", "b")]
        for broker in brokers:
            broker.start()
            assert broker.proc is not None
            os.sched_setaffinity(broker.proc.pid, {1})
        try:
            runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
            for run in range(args.runs):  # interleaved, so drifting co-tenant load hits all alike
                for kind in KINDS:
                    runs[kind].append(measure(kind, brokers[0].port, brokers[1].port, args, run))
        finally:
            for broker in brokers:
                broker.stop()
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
    print(
        f"QoS 1, {PAYLOAD_BYTES}-byte messages A -> bridge -> B on loopback, bridge on 1 core; "
        f"median of {args.runs} x {args.seconds:g} s"
    )
    print(
        f"{'bridge':<16} {'forwarded msg/s':>16} {'CPU':>5} {'vs mosquitto':>13} "
        f"{f'p50 ms @{args.rate:g}/s':>15} {'p99 ms':>8}"
    )
    for kind in KINDS:
        m = med[kind]
        print(
            f"{kind:<16} {m['msgs']:>16,.0f} {m['cpu']:>5.0%} "
            f"{m['msgs'] / med['mosquitto']['msgs']:>13.2f} {m['p50']:>15.2f} {m['p99']:>8.2f}"
        )
    if args.json is not None:
        result = {"bench": "bridge", "args": vars(args), "medians": med}
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
