"""The layout language: a second, made-up device format added with a TOML file alone."""

from __future__ import annotations

import struct

import pytest

from parser.codec import Codec, CodecOptions
from parser.crc import crc16_x25
from parser.errors import LayoutError
from parser.events import Frame, Login
from parser.layout import compile_layout
from parser.layout_codec import LayoutCodec
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


def test_made_up_format_decodes() -> None:
    codec = LayoutCodec(compile_layout(ACME2, "acme2.toml"), CodecOptions())
    check_acme(codec)


def check_acme(codec: Codec) -> None:
    """The ACME2 stream decodes as its layout says (shared with the registry test)."""
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


def test_wrong_size_policy_frame_keeps_the_raw_frame() -> None:
    codec = LayoutCodec(compile_layout(ACME2, "acme2.toml"), CodecOptions())
    short = acme_frame(1, b"\x00" * 5)
    (event,) = codec.session().feed(short)
    assert isinstance(event, Frame)
    assert (event.error_code, event.readings, event.payload) == ("bad_size", (), short)


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (('name = "acme2"', 'name = "Acme 2"'), "codec.name"),
        (('magic = "aa"', 'magic = "zz"'), "framing.magic"),
        (('resync = "aa02"', 'resync = "bb"'), "framing.resync"),
        (("max = 200", "min = 200"), "framing.header"),
        (('length = "size"', 'length = "nope"'), "framing.length"),
        (('"crc16-x25"', '"crc32"'), "framing.crc.kind"),
        (('to = "metrics.coolant_c"', 'to = "metrics.Coolant"'), "message[1].fields[1].to"),
        (('to = "attrs.mode"', 'to = "position.altitude"'), "message[1].fields[2].to"),
        (('count = "count"', 'count = "missing"'), "message[1].fields[5].count"),
        (('kind = "telemetry"', 'kind = "gps"'), "message[1].kind"),
        (("id = 1\n", "id = 7\n"), "message[1].id"),
        (('value = "kind"', 'value = "knd"'), "ack.body[0].value"),
        (("scale = 0.01", "scale = 0"), "message[1].fields[5].scale"),
    ],
)
def test_layout_errors_name_the_file_and_key(edit: tuple[str, str], where: str) -> None:
    text = ACME2.replace(*edit)
    assert text != ACME2
    with pytest.raises(LayoutError) as info:
        compile_layout(text, "acme2.toml")
    assert str(info.value).startswith(f"acme2.toml: {where}")


def test_not_toml_is_a_layout_error() -> None:
    with pytest.raises(LayoutError, match=r"^x\.toml: not valid TOML"):
        compile_layout("[codec\n", "x.toml")


def test_strings_from_the_file_never_become_code() -> None:
    text = ACME2.replace('unknown = "mode{}"', "unknown = \"')+__import__('os').getpid()#{}\"")
    layout = compile_layout(text, "acme2.toml")
    body = struct.pack("<QhBBB3HB", 1, 0, 9, 0, 0, 0, 0, 0, 0)[: 8 + 2 + 3 + 1]
    _, (reading,) = layout.messages[1].decoder(body, 0, len(body))
    assert reading.attrs["mode"] == "')+__import__('os').getpid()#9"
