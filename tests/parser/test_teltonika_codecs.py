"""Teltonika Codec 16, Codec 7 (GH3000) and Codec 12/13 messages: real captures field by field.

Captures (hex) are from Traccar's public unit test ``TeltonikaProtocolDecoderTest.java``
(github traccar/traccar, src/test/java/org/traccar/protocol/), only those whose CRC is right,
and the wiki's own Codec 16 example; the expected values below were
worked out by hand from the Teltonika wiki ("Teltonika Data Sending Protocols": Codec 16,
Codec 12, Codec 13) and the "GH3000 Data Protocol" v1.08 (Codec 7), not from any decoder.
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parser.codec import CodecOptions
from parser.crc import crc16_arc
from parser.errors import DecodeError
from parser.events import Frame, Login
from parser.records import Alarm, iso_ms
from parser.teltonika import TeltonikaCodec
from tests.parser.streams import feed_three_ways, feed_whole

CODEC = TeltonikaCodec(CodecOptions())
LOGIN = bytes.fromhex("000f333536333037303432343431303133")

# The wiki's own Codec 16 example (Teltonika Data Sending Protocols, "Codec 16", example 1).
CODEC16_WIKI = bytes.fromhex(
    "000000000000005F10020000016BDBC7833000000000000000000000000000000000000B05040200010000030002"
    "000B00270042563A00000000016BDBC7871800000000000000000000000000000000000B05040200010000030002"
    "000B00260042563A00000200005FB3"
)
CODEC16_CHILE = bytes.fromhex(
    "000000000000009F100100000164D855401800D5E3B744EC11C762023B011A060000000007200A0100000105"
    "00010600010D00010E00010F00011600011700011800011F001301010000010700000108000001090000010A"
    "0000010B0000010C000001100000011100000112000001130000011400000115000001190000011A0000011B"
    "0000011C0000011D0000011E000003010200000000010300000000010400000000000100000D3B"
)
CODEC7_FOUR = bytes.fromhex(
    "0000000000000055070450aa14320201f00150aa17f3031f42332a4c4193d68c008d00020901f00150aa1b6a"
    "031f423383f54193624f009d00000a01f00150aa1c230fc01a0000552b040164f400dd00f0010143100c0105"
    "000000050400006846"
)
CODEC7_CELL = bytes.fromhex(
    "000000000000003107024c61410b013f4231c2c141d0beb9003d000005006483ff4c6140eb013f4231c2c141"
    "d0beb9003d000005006483ff02000041df"
)
CODEC12_RESPONSE = bytes.fromhex(
    "000000000000002d0c01060000002523464d323d3236323033323736313732313339362c32363230332c3037"
    "2e30322e30350d0a0100009a2e"
)
CODEC13_MILLIS = bytes.fromhex(
    "00000000000000170D01050000000F0000016C0A81C320676574696E666F0100006855"
)
# Codec 8 from a firmware with a 16-byte IO group (Traccar's test runs it with "extended").
IO16_ELEVEN = bytes.fromhex(
    "0000000000000158080b0000015d4b4dc07a00d5dbd13eec04324e020e000012000000000000000000000001"
    "5d4b4cd5e800d5dbd13eec04324e020e0000120000000000000000000000015d4b4beb8800d5dbd13eec0432"
    "4e020e0000130000000000000000000000015d4b4b012800d5dbd13eec04324e020e00001200000000000000"
    "00000000015d4b4a16c800d5dbd13eec04324e020f0000110000000000000000000000015d4b492c6800d5db"
    "d13eec04324e020f0000110000000000000000000000015d4b48420800d5dbd13eec04324e020f0000120000"
    "000000000000000000015d4b4757a800d5dbd13eec04324e020f00000f0000000000000000000000015d4b46"
    "6d4800d5dbd13eec04324e020f0000100000000000000000000000015d4b4582e800d5dbd13eec04324e020f"
    "0000110000000000000000000000015d4b44988800d5dbd13eec04324e020f0000110000000000000000000b"
    "0000ec10"
)
CAPTURES = [CODEC16_WIKI, CODEC16_CHILE, CODEC7_FOUR, CODEC7_CELL, CODEC12_RESPONSE]
CAPTURES += [CODEC13_MILLIS]


def frame_of(data: bytes) -> Frame:
    [event] = feed_whole(CODEC, data)
    assert isinstance(event, Frame), event
    assert event.error_code is None, event.error_detail
    assert event.readings == CODEC.decode(data)
    return event


def packet(data: bytes) -> bytes:
    return struct.pack(">II", 0, len(data)) + data + struct.pack(">I", crc16_arc(data))


# --- Codec 16 ----------------------------------------------------------------------------------


def test_codec16_wiki_example_field_by_field() -> None:
    event = frame_of(CODEC16_WIKI)
    assert event.reply == b"\x00\x00\x00\x02"  # the record count, as for Codec 8
    first, second = event.readings
    assert iso_ms(first.ts_ms or 0) == "2019-07-10T12:06:54.000Z"
    assert iso_ms(second.ts_ms or 0) == "2019-07-10T12:06:55.000Z"
    # No fix: zero coordinates and satellites.
    assert first.position is not None and first.position.valid is False
    # Event IO id takes 2 bytes (11), then the generation type (5: on change), a 1-byte total.
    assert first.attrs == {"priority": 0, "event_io_id": 11, "generation_type": 5}
    # 2-byte IO ids with 1-byte counts: two 1-byte values, two 2-byte values.
    assert first.io == {"1": 0, "3": 0, "11": 0x27, "66": 0x563A}
    assert second.io == {"1": 0, "3": 0, "11": 0x26, "66": 0x563A}
    assert first.metrics["external_voltage_v"] == 22.074  # AVL 66 in mV


def test_codec16_southern_hemisphere_and_32_io_elements() -> None:
    [reading] = frame_of(CODEC16_CHILE).readings
    assert reading.position is not None
    # lon 0xd5e3b744, lat 0xec11c762 are signed: Santiago de Chile.
    assert (reading.position.lat, reading.position.lon) == (-33.4379166, -70.64967)
    assert (reading.position.alt_m, reading.position.heading_deg) == (571, 282)
    assert reading.attrs["generation_type"] == 7
    assert len(reading.io) == 32


# --- Codec 7 (GH3000) -----------------------------------------------------------------------------


def test_codec7_records_carry_only_what_their_masks_say() -> None:
    event = frame_of(CODEC7_FOUR)
    assert event.reply == b"\x00\x00\x00\x04"
    first, second, third, fourth = event.readings
    # 0x50aa1432: priority 1 (bits 31-30); 0x10aa1432 s after 2007-01-01.
    assert iso_ms(first.ts_ms or 0) == "2015-11-10T21:35:46.000Z"
    assert (first.position, first.io, first.attrs["priority"]) == (None, {"240": 1}, 1)
    assert second.position is not None
    # Floats 0x42332a4c / 0x4193d68c, altitude 0x8d, angle 0, speed 2, 9 satellites.
    assert second.position.lat == pytest.approx(44.791305, abs=1e-6)
    assert second.position.lon == pytest.approx(18.479759, abs=1e-6)
    assert (second.position.alt_m, second.position.heading_deg) == (141, 0)
    assert (second.position.speed_kmh, second.position.satellites) == (2, 9)
    assert third.position is not None and third.position.satellites == 10
    # Global mask 0x0f: GPS element with only signal quality and operator; three IO groups.
    assert fourth.position is None
    assert (fourth.metrics["gsm_signal"], fourth.attrs["operator"]) == (0x1A, 0x552B)
    assert fourth.io == {"1": 100, "244": 0, "221": 0, "240": 1, "67": 0x100C, "5": 5}


def test_codec7_cell_and_angle() -> None:
    first, second = frame_of(CODEC7_CELL).readings
    assert first.position is not None
    assert first.position.lat == pytest.approx(44.440189, abs=1e-6)
    assert (first.position.satellites, first.position.heading_deg) == (5, 0)
    assert (first.attrs["lac"], first.attrs["cell_id"]) == (0x64, 0x83FF)
    assert first.io == second.io == {}


def test_codec7_panic_priority_is_an_alarm() -> None:
    record = struct.pack(">IB", 2 << 30 | 100, 0x02) + b"\x01\xf0\x01"
    event = frame_of(packet(b"\x07\x01" + record + b"\x01"))
    [reading] = event.readings
    assert reading.kind == "alarm"
    assert reading.alarms == (Alarm("teltonika_panic", "critical", "tcu", None),)
    assert reading.ts_ms == (1_167_609_600 + 100) * 1000


# --- the io16 variant ---------------------------------------------------------------------------


def test_io16_variant_reads_the_group_of_16_byte_values() -> None:
    codec = TeltonikaCodec(CodecOptions(variant="io16"))
    [event] = feed_whole(codec, IO16_ELEVEN)
    assert isinstance(event, Frame) and event.error_code is None
    assert event.reply == b"\x00\x00\x00\x0b"
    first = event.readings[0]
    assert len(event.readings) == 11
    assert iso_ms(first.ts_ms or 0) == "2017-07-16T12:09:33.050Z"
    assert first.position is not None
    assert (first.position.lat, first.position.lon) == (-33.5269298, -70.7014338)
    assert (first.position.alt_m, first.position.satellites) == (526, 18)
    # The standard reading misplaces every record after the first's empty 16-byte group.
    [standard] = feed_whole(CODEC, IO16_ELEVEN)
    assert isinstance(standard, Frame) and standard.error_code == "bad_body"
    value = bytes(range(16))
    head = IO16_ELEVEN[10 : 10 + 26]  # timestamp .. total IO count of the first record (0)
    data = b"\x08\x01" + head[:-1] + b"\x01" + bytes(4) + b"\x01\x07" + value + b"\x01"
    [reading] = codec.decode(packet(data))
    assert reading.io == {"7": value.hex()}
    with pytest.raises(ValueError, match="unknown teltonika variant 'x'"):
        TeltonikaCodec(CodecOptions(variant="x"))


# --- Codec 12 / 13: command replies -------------------------------------------------------------


def test_codec12_response_is_a_command_reply_record_without_ack() -> None:
    event = frame_of(CODEC12_RESPONSE)
    assert event.reply == b""  # no record count to echo (wiki, Codec 12)
    [reading] = event.readings
    assert (reading.kind, reading.ts_ms) == ("command_reply", None)
    assert reading.attrs == {
        "codec": 0x0C,
        "type": "response",
        "text": "#FM2=262032761721396,26203,07.02.05\r\n",
    }


def test_codec13_with_a_timestamp_in_seconds() -> None:
    # Wiki layout: type, size of the command, a 4-byte timestamp outside the size, command.
    text = b"#GET DATAORDER\r\n"
    data = b"\x0d\x01\x05" + struct.pack(">II", len(text), 0x56E92422) + text + b"\x01"
    [reading] = frame_of(packet(data)).readings
    assert reading.kind == "command_reply"
    assert iso_ms(reading.ts_ms or 0) == "2016-03-16T09:15:14.000Z"
    assert reading.attrs["text"] == "#GET DATAORDER\r\n"


def test_codec13_with_a_timestamp_in_milliseconds() -> None:
    [reading] = frame_of(CODEC13_MILLIS).readings
    assert iso_ms(reading.ts_ms or 0) == "2019-07-19T13:52:52.000Z"
    assert reading.attrs["text"] == "getinfo"


@pytest.mark.parametrize(
    "data",
    [
        b"\x0c\x02\x06\x00\x00\x00\x01A\x02",  # two messages in one Codec 12 packet
        b"\x0c\x01\x06\x00\x00\x00\x05A\x01",  # size says 5, one byte follows
        b"\x0d\x01\x05\x00\x00\x00\x09ABC\x01",  # Codec 13 without room for its timestamp
    ],
)
def test_malformed_command_messages_are_kept_raw(data: bytes) -> None:
    [event] = feed_whole(CODEC, packet(data))
    assert isinstance(event, Frame)
    assert (event.error_code, event.readings) == ("bad_body", ())


# --- every capture, three ways, and properties ---------------------------------------------------


@pytest.mark.parametrize("trailing", [b"", b"\x00", b"\x00\x00\x00\x00\x00\x00"])
def test_captures_three_ways_after_login(trailing: bytes) -> None:
    events = feed_three_ways(CODEC, LOGIN + b"".join(CAPTURES), trailing)
    assert isinstance(events[0], Login)
    assert [e.payload for e in events[1:]] == CAPTURES  # type: ignore[union-attr]
    assert all(isinstance(e, Frame) and e.error_code is None for e in events[1:])


@settings(max_examples=300, deadline=None)
@given(
    capture=st.sampled_from(CAPTURES),
    at=st.integers(min_value=0),
    value=st.integers(0, 255),
)
def test_mutated_bodies_with_a_valid_crc_decode_or_report(
    capture: bytes, at: int, value: int
) -> None:
    check_mutated(capture, at, value)


def test_codec_7_coordinates_that_are_not_numbers_are_a_decode_error() -> None:
    """Found by the property above: a mutated longitude float became NaN (which never equals
    itself, nor a fix); such a record is a decode error, not a position."""

    def record(lat: float, lon: float) -> bytes:
        # Time word, global mask (GPS element only), GPS mask (bit 0: latitude and longitude).
        return bytes.fromhex("1450aa140101") + struct.pack(">ff", lat, lon)

    def body(lat: float, lon: float) -> bytes:
        return b"\x07\x01" + record(lat, lon) + b"\x01"

    [good] = feed_whole(CODEC, packet(body(18.52, 73.85)))
    assert isinstance(good, Frame) and good.error_code is None
    for lat, lon in [(18.52, math.nan), (math.inf, 73.85), (91.0, 73.85), (18.52, -180.5)]:
        [event] = feed_whole(CODEC, packet(body(lat, lon)))
        assert isinstance(event, Frame) and event.error_code == "bad_position"


def check_mutated(capture: bytes, at: int, value: int) -> None:
    data = bytearray(capture[8:-4])
    data[at % len(data)] = value
    frame = packet(bytes(data))
    [event] = feed_whole(CODEC, frame)
    if isinstance(event, Frame):
        if event.error_code is None:
            assert event.readings == CODEC.decode(frame)
        else:
            with pytest.raises(DecodeError):
                CODEC.decode(frame)
