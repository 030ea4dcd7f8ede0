"""MQTT ingest: the gateway's MQTT listener against Debian's mosquitto and amqtt, same load.

Run: ``.venv/bin/python bench/mqtt.py [--runs 3] [--seconds 4] [--amqtt-python PATH]``.

Each server is pinned to CPU 0 and this load generator to CPU 1. Load: ``--publishers`` MQTT
3.1.1 connections, each keeping ``--window`` QoS 1 PUBLISHes un-acknowledged and sending the
next ones as PUBACKs come back (one write per read of PUBACKs); every message is one pre-encoded
101-byte EVB1 CELLS frame (43 cells, the EVB1 size nearest 100 bytes) on its device's
``ev/{device_id}/telemetry``. The gateway runs its full pipeline — decode, raw and parsed
records, the local sink — under ``accepted`` (PUBACK once in its buffer: mosquitto's own promise,
which acknowledges before anything is on disk) and ``delivered`` (PUBACK once the sink has
written and fsynced the batch). mosquitto runs without persistence or subscribers (its QoS 1
PUBACK is immediate either way); amqtt runs on uvloop from ``--amqtt-python`` (an interpreter
that can import amqtt: it is not a project dependency; ``make bench`` builds one in .bench-venv
from bench/amqtt-constraints.txt), or is skipped when there is none.
Rates: PUBACKs per second over the measured window, median of ``--runs`` interleaved runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import cast

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import GATEWAY, cpu_seconds  # noqa: E402

from parser.mqtt.encode import encode, encode_publish  # noqa: E402
from parser.mqtt.packets import MQTT_311, Connect  # noqa: E402
from tests.local_server import free_port  # noqa: E402
from tests.parser.streams import evb1_frame  # noqa: E402

PUBACK_BYTES = 4  # 40 02 <packet id>; CONNACK is 4 bytes too (20 02 00 00)
CELLS = 43

AMQTT_MAIN = """
import asyncio, sys, uvloop
from amqtt.broker import Broker

async def main():
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{sys.argv[1]}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    await asyncio.Event().wait()

uvloop.run(main())
"""


def cells_frame(seq: int) -> bytes:
    volts = [3300 + (seq + i) % 200 for i in range(CELLS)]
    body = struct.pack(f">IB{CELLS}H", 1767225600 + seq, CELLS, *volts)
    return evb1_frame(5, seq & 0xFFFF, body)


def connack_within(port: int, timeout_s: float) -> bool:
    """Readiness is a CONNACK, not an open port: a busy broker may accept and not answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(encode(Connect(MQTT_311, "ready"), MQTT_311))
                if sock.recv(4)[:1] == b"\x20":
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


class Server:
    """One server under test on a free loopback port, pinned to CPU 0."""

    def __init__(self, kind: str, tmp: Path, amqtt_python: str | None) -> None:
        self.port = free_port()
        env = {**os.environ, "GATEWAY_LOG__LEVEL": "warning", "GATEWAY_LOG__FORMAT": "json"}
        if kind.startswith("gateway"):
            policy = kind.split("-")[1]
            config = tmp / "gateway.toml"
            config.write_text(
                "listeners = []\n[metrics]\nenabled = false\n[health]\nenabled = false\n"
                f"[sink.local]\ndata_dir = '{tmp / 'data'}'\n"
                f"[[mqtt_listeners]]\nhost = '127.0.0.1'\nport = {self.port}\n"
                f"ack_policy = '{policy}'\nreceive_maximum = 1024\n"
            )
            args = [GATEWAY, "run", "--config", str(config)]
        elif kind == "mosquitto":
            config = tmp / "mosquitto.conf"
            config.write_text(
                f"user root\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
                "persistence false\nlog_dest none\n"
            )
            args = ["/usr/sbin/mosquitto", "-c", str(config)]
        else:
            assert amqtt_python is not None
            args = [amqtt_python, "-c", AMQTT_MAIN, str(self.port)]
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp,
        )  # fmt: skip
        if not connack_within(self.port, 30):
            self.stop()
            raise RuntimeError(f"{kind} did not answer a CONNECT")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class Publisher(asyncio.Protocol):
    """One device: CONNECT, then ``window`` PUBLISHes in flight, refilled as PUBACKs arrive."""

    def __init__(self, index: int, window: int, counter: list[int]) -> None:
        device = f"{861000000000000 + index:015d}"
        topic = f"ev/{device}/telemetry"
        # Packet ids 1..window in turn: with acknowledgements in order, an id is reused only
        # after its PUBACK. Pre-encoded, so the generator spends its CPU on the socket.
        self.packets = [
            encode_publish(topic, cells_frame(index * window + i), 1, i + 1) for i in range(window)
        ]
        self.connect = encode(Connect(MQTT_311, f"bench-{index}"), MQTT_311)
        self.window = window
        self.next = 0
        self.counter = counter
        self.pending = 0
        self.connected = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass it
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.write(self.connect)

    def _send(self, count: int) -> None:
        assert self.transport is not None
        packets, start = self.packets, self.next
        end = start + count
        if end <= self.window:
            batch = packets[start:end]
        else:
            batch = packets[start:] + packets[: end - self.window]
        self.next = end % self.window
        self.transport.write(b"".join(batch))

    def data_received(self, data: bytes) -> None:
        self.pending += len(data)
        acks, self.pending = divmod(self.pending, PUBACK_BYTES)
        if not self.connected:
            self.connected = True
            acks -= 1  # the CONNACK
            self._send(self.window)
        self.counter[0] += acks
        if acks:
            self._send(acks)


async def flood(port: int, args: argparse.Namespace, mark: list[float], pid: int) -> float:
    """PUBACKs per second over ``args.seconds`` after ``args.warmup``; fills ``mark`` with the
    server's CPU seconds per second over the same window."""
    loop = asyncio.get_running_loop()
    counter = [0]
    publishers = []
    for index in range(args.publishers):
        factory = partial(Publisher, index, args.window, counter)
        _, proto = await loop.create_connection(factory, "127.0.0.1", port)
        publishers.append(proto)
    await asyncio.sleep(args.warmup)
    start, acked0, cpu0 = time.monotonic(), counter[0], cpu_seconds(pid)
    await asyncio.sleep(args.seconds)
    wall = time.monotonic() - start
    mark.append((cpu_seconds(pid) - cpu0) / wall)
    for proto in publishers:
        assert proto.transport is not None
        proto.transport.abort()
    return (counter[0] - acked0) / wall


def measure(kind: str, args: argparse.Namespace) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        server = Server(kind, Path(tmp), args.amqtt_python)
        try:
            cpu: list[float] = []
            rate = uvloop.run(flood(server.port, args, cpu, server.proc.pid))
            return rate, cpu[0]
        finally:
            server.stop()


def amqtt_interpreter(given: str | None) -> str | None:
    python = shutil.which(given) if given else sys.executable
    if python is None:
        return None
    python = str(Path(python).absolute())  # each server starts in its own directory
    check = subprocess.run([python, "-c", "import amqtt, uvloop"], capture_output=True,
                           check=False)  # fmt: skip
    return python if check.returncode == 0 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--publishers", type=int, default=50)
    ap.add_argument("--window", type=int, default=64, help="QoS 1 PUBLISHes in flight each")
    ap.add_argument("--amqtt-python", help="a Python that can import amqtt and uvloop")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs 2 CPUs: the server on one, the load on the other")
    os.sched_setaffinity(0, {1})
    args.amqtt_python = amqtt_interpreter(args.amqtt_python)
    kinds = ["gateway-accepted", "gateway-delivered", "mosquitto"]
    if args.amqtt_python is None:
        print("amqtt: skipped (no interpreter can import amqtt; pass --amqtt-python)\n")
    else:
        kinds.append("amqtt")
    runs: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
    for _ in range(args.runs):  # interleaved, so drifting co-tenant load hits all alike
        for kind in kinds:
            runs[kind].append(measure(kind, args))
    rate = {k: statistics.median(r for r, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    print(
        f"QoS 1, {args.publishers} publishers x {args.window} in flight, 101-byte EVB1 frames, "
        f"server on 1 core; median of {args.runs} x {args.seconds:g} s"
    )
    print(f"{'server':<20} {'PUBACKed msg/s':>15} {'CPU':>6} {'vs mosquitto':>13} {'vs amqtt':>9}")
    for kind in kinds:
        vs_amqtt = f"{rate[kind] / rate['amqtt']:9.1f}" if "amqtt" in rate else f"{'-':>9}"
        print(
            f"{kind:<20} {rate[kind]:>15,.0f} {cpu[kind]:>6.0%} "
            f"{rate[kind] / rate['mosquitto']:>13.2f} {vs_amqtt}"
        )
    if args.json is not None:
        result = {"bench": "mqtt", "args": vars(args), "msgs_per_s": rate, "cpu": cpu}
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
