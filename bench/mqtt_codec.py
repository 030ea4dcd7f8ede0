"""Server-side MQTT codec throughput: QoS 1 PUBLISH packets (100-byte payload) framed and parsed.

Run: ``make bench`` (or ``.venv/bin/python bench/mqtt_codec.py [--seconds S] [--runs N]``).
Pins itself to one CPU and reports the median of several runs of ``bench/decode.py``'s
``measure`` (CPU time). Baseline measured in the same run: a bare loop that walks the same
buffer with ``struct`` and slices out each topic and payload, with no checks — the floor any
Python framer+parser pays. Rows: 3.1.1 and 5.0, in one read or in 1,460-byte TCP segments,
with and without building the PUBACK bytes, and the 5.0 topic-alias path.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from decode import measure  # noqa: E402

from parser.mqtt import (  # noqa: E402
    MQTT_5,
    MQTT_311,
    Connect,
    MqttServerConnection,
    Properties,
    Publish,
    encode,
    encode_publish,
)

PACKETS = 1000
PAYLOAD = bytes(range(100))
SEGMENT_BYTES = 1460  # one Ethernet MSS: the reads a listener sees under load
_TOPIC_LENGTH = struct.Struct(">H")


def publishes(level: int, alias: bool = False) -> bytes:
    """``PACKETS`` QoS 1 PUBLISHes; with ``alias`` the first sets Topic Alias 1, the rest
    send only the alias (5.0 §3.3.2.3.4)."""
    out = []
    for i in range(PACKETS):
        topic = f"ev/{356307042441013 + i % 50}/telemetry"
        if alias:
            properties = Properties(topic_alias=1)
            out.append(
                encode_publish(
                    topic if i == 0 else "",
                    PAYLOAD,
                    1,
                    i + 1,
                    protocol_level=level,
                    properties=properties,
                )
            )
        else:
            out.append(encode_publish(topic, PAYLOAD, 1, i + 1, protocol_level=level))
    return b"".join(out)


def baseline(stream: bytes) -> Callable[[], int]:
    """Walks the fixed headers (a 2-byte remaining length: these packets are 128..16,383
    bytes), slices out topic and payload, no checks: the cheapest possible parser."""
    unpack = _TOPIC_LENGTH.unpack_from

    def run() -> int:
        pos = 0
        size = len(stream)
        count = 0
        while pos < size:
            body = pos + 3
            end = body + ((stream[pos + 1] & 0x7F) | stream[pos + 2] << 7)
            (length,) = unpack(stream, body)
            stream[body + 2 : body + 2 + length]
            stream[body + 4 + length : end]
            pos = end
            count += 1
        return count

    return run


def connected(level: int) -> MqttServerConnection:
    connection = MqttServerConnection(topic_alias_maximum=8)
    connection.feed(encode(Connect(level, "bench", keep_alive_s=60), level))
    return connection


def parse(level: int, stream: bytes, segment: int = 0, ack: bool = False) -> Callable[[], int]:
    """Feed ``stream`` (whole, or in ``segment``-byte reads); optionally build and join the
    PUBACKs of each read, as the listener does before one write."""
    connection = connected(level)
    chunks = (
        [stream[i : i + segment] for i in range(0, len(stream), segment)] if segment else [stream]
    )
    feed = connection.feed
    pubacks = connection.pubacks

    def run() -> int:
        count = 0
        for chunk in chunks:
            packets = feed(chunk)
            if ack:
                pubacks([p.packet_id for p in packets if isinstance(p, Publish)])
            count += len(packets)
        return count

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="per run")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    v311 = publishes(MQTT_311)
    v5 = publishes(MQTT_5)
    rows: list[tuple[str, Callable[[], int]]] = [
        ("baseline: struct + slices, no checks", baseline(v311)),
        ("3.1.1 parse, one read", parse(MQTT_311, v311)),
        ("3.1.1 parse, 1460-byte reads", parse(MQTT_311, v311, SEGMENT_BYTES)),
        ("3.1.1 parse + PUBACKs joined", parse(MQTT_311, v311, ack=True)),
        ("5.0 parse, one read", parse(MQTT_5, v5)),
        ("5.0 parse, 1460-byte reads", parse(MQTT_5, v5, SEGMENT_BYTES)),
        ("5.0 parse + PUBACKs joined", parse(MQTT_5, v5, ack=True)),
        ("5.0 parse, topic alias", parse(MQTT_5, publishes(MQTT_5, alias=True))),
    ]

    def encoder() -> int:
        for i in range(PACKETS):
            encode_publish("ev/356307042441013/telemetry", PAYLOAD, 1, i + 1)
        return PACKETS

    rows.append(("encode_publish (client side)", encoder))
    print(f"{'QoS 1 PUBLISH, 100-byte payload':<40} {'packets/s':>12} {'vs baseline':>12}")
    base = 0.0
    for label, fn in rows:
        rate = measure(fn, args.seconds, args.runs)
        base = base or rate
        print(f"{label:<40} {rate:>12,.0f} {rate / base:>12.2f}")


if __name__ == "__main__":
    main()
