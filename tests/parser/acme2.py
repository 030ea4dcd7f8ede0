"""ACME2, a made-up device format defined by a layout file alone: its TOML, a frame builder and
the check that a codec built from it decodes as the layout says (the layout-language tests and the
codec registry tests both use them)."""

from __future__ import annotations

import struct

from parser.codec import Codec
from parser.crc import crc16_x25
from parser.events import Frame, Login
from tests.parser.streams import feed_three_ways

# "ACME2": little-endian, one-byte magic, X.25 CRC over the whole frame, no ACK body field but a
# constant, a bit that raises an alarm, an enum, a hex blob, an array and a field after it.
ACME2 = """
[codec]
name = "acme2"
transports = ["tcp"]

[framing]
byte_order = "little"
magic = "aa"
resync = "aa02"
header = [
  { name = "ver", type = "u8", expect = 2 },
  { name = "kind", type = "u8" },
  { name = "size", type = "u16", max = 200 },
]
length = "size"
dispatch = "kind"
crc = { kind = "crc16-x25", from = 0 }
wrong_size = "frame"

[ack]
header = { ver = 2, kind = 0xff, size = 0 }
body = [ { type = "u8", value = "kind" }, { type = "u16", value = 0xbeef } ]

[[message]]
id = 7
name = "hello"
kind = "login"
fields = [ { name = "serial", type = "hex", size = 4, to = "device_id" } ]

[[message]]
id = 1
name = "sample"
kind = "telemetry"
fields = [
  { name = "t", type = "u64", unit = "ms", to = "ts" },
  { name = "temp", type = "i16", scale = 0.5, offset = -40, to = "metrics.coolant_c" },
  { name = "mode", type = "u8", enum = { 0 = "park", 1 = "drive" }, unknown = "mode{}", to = "attrs.mode" },
  { name = "status", type = "u8", bits = [
    { bit = 7, to = "metrics.door_open", alarm = { code = "door_open", severity = "warning", subsystem = "body" } },
  ] },
  { name = "count", type = "u8" },
  { name = "loads", type = "u16", count = "count", scale = 0.01, to = "metrics.phase_load_pct" },
  { name = "trailer", type = "u8", to = "metrics.trailer" },
]
"""


def acme_frame(kind: int, body: bytes) -> bytes:
    frame = b"\xaa" + struct.pack("<BBH", 2, kind, len(body)) + body
    return frame + struct.pack("<H", crc16_x25(frame))


def check_acme(codec: Codec) -> None:
    """The ACME2 stream decodes as its layout says."""
    hello = acme_frame(7, bytes.fromhex("0badcafe"))
    body = struct.pack("<QhBBB3HB", 1700000000123, 130, 1, 0x80, 3, 1000, 2550, 5, 9)
    sample = acme_frame(1, body)
    events = feed_three_ways(codec, hello + sample, trailing=b"\xaa\x02")
    login, frame = events
    assert isinstance(login, Login) and login.device_id == "0badcafe"
    assert login.reply == acme_frame(0xFF, struct.pack("<BH", 7, 0xBEEF))
    assert isinstance(frame, Frame) and frame.device_id == "0badcafe"
    (reading,) = frame.readings
    assert reading.kind == "telemetry"
    assert reading.ts_ms == 1700000000123
    assert reading.metrics == {
        "coolant_c": 25.0,
        "door_open": True,
        "phase_load_pct": [10.0, 25.5, 0.05],
        "trailer": 9,
    }
    assert reading.attrs == {"mode": "drive"}
    assert [(a.code, a.severity, a.subsystem) for a in reading.alarms] == [
        ("door_open", "warning", "body")
    ]
