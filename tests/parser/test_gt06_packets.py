"""GT06 family packets beyond the original doc: captures in ``tests/data/vectors/gt06_packets.json``
checked field by field, tolerant lengths, replies, model variants and unknown types."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from parser.codec import CodecOptions
from parser.crc import crc16_x25
from parser.errors import DecodeError
from parser.events import Frame, Login
from parser.gt06 import Gt06Codec
from parser.records import Alarm, Reading, iso_ms
from tests.parser.gt06_frames import (
    GPS,
    LBS,
    LOGIN,
    LOGIN_IMEI,
    STATUS,
    build,
    only_frame,
    short_reply,
)
from tests.parser.streams import feed_three_ways, feed_whole, load_vectors

CASES = load_vectors("gt06_packets")
# Captures of the standard models; the others name the listener variant of their model.
FRAMES = [bytes.fromhex(case["hex"]) for case in CASES if "variant" not in case]
NOW_MS = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z
CODEC = Gt06Codec(CodecOptions(clock_ms=lambda: NOW_MS))


def reply_hex(frame: bytes) -> str:
    return only_frame(feed_whole(CODEC, frame)).reply.hex()


def long_reply(protocol: int, serial: bytes) -> bytes:
    """The 7979 form of the echo, computed here apart from the codec."""
    body = b"\x00\x05" + bytes((protocol,)) + serial
    return b"\x79\x79" + body + crc16_x25(body).to_bytes(2, "big") + b"\r\n"


def expected_reply(expect: dict[str, Any], frame: bytes) -> bytes:
    protocol, serial = int(expect["protocol"], 16), frame[-6:-4]
    if expect["reply_hex"] == "SHORT":
        return short_reply(protocol, int.from_bytes(serial, "big"))
    if expect["reply_hex"] == "LONG":
        return long_reply(protocol, serial)
    if expect["reply_hex"] == "TIME":
        body = bytes((0x0B, 0x8A, 26, 1, 1, 0, 0, 0)) + serial
        return b"\x78\x78" + body + crc16_x25(body).to_bytes(2, "big") + b"\r\n"
    assert expect["reply_hex"] is None
    return b""


POSITION_KEYS = ("lat", "lon", "speed_kmh", "heading_deg", "satellites", "valid", "alt_m")
ATTR_KEYS = (
    *("mcc", "mnc", "lac", "cell_id", "upload_mode", "reupload", "alarm", "text"),
    *("server_flag", "event", "extra", "cells", "wifi", "timing_advance", "language"),
    *("imei", "cell_type"),
)
METRIC_KEYS = (
    *("ignition", "voltage_level", "gsm_signal", "odometer_m", "battery_voltage_v"),
    *("external_voltage_v", "power_cut", "gps_tracking"),
)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_capture_field_by_field(case: dict[str, Any]) -> None:
    expect = case["expect"]
    frame = bytes.fromhex(case["hex"])
    codec = Gt06Codec(
        CodecOptions(clock_ms=lambda: NOW_MS, variant=case.get("variant", "standard"))
    )
    event = only_frame(feed_whole(codec, frame))
    assert event.error_code is None, event.error_detail
    assert event.reply == expected_reply(expect, frame)
    assert event.readings == codec.decode(frame)
    if expect["kind"] is None:
        assert event.readings == ()
        return
    [reading] = event.readings
    assert reading.kind == expect["kind"]
    if "ts" in expect:
        assert reading.ts_ms is not None and iso_ms(reading.ts_ms) == expect["ts"]
    if "lat" in expect:
        assert reading.position is not None
        for key in POSITION_KEYS:
            if key in expect:
                assert getattr(reading.position, key) == pytest.approx(expect[key], abs=1e-6), key
    for key in ATTR_KEYS:
        if key in expect:
            assert reading.attrs[key] == expect[key], key
    for key in METRIC_KEYS:
        if key in expect:
            assert reading.metrics[key] == pytest.approx(expect[key]), key
    if "alarm_code" in expect:
        assert [a.code for a in reading.alarms] == [expect["alarm_code"]]


@pytest.mark.parametrize("trailing", [b"", b"\x78", b"\x79\x79\x00"])
def test_every_capture_three_ways_after_login(trailing: bytes) -> None:
    events = feed_three_ways(CODEC, LOGIN + b"".join(FRAMES), trailing)
    assert isinstance(events[0], Login)
    frames = events[1:]
    assert [e.payload for e in frames] == FRAMES  # type: ignore[union-attr]
    assert all(isinstance(e, Frame) and e.device_id == LOGIN_IMEI for e in frames)
    assert all(isinstance(e, Frame) and e.error_code is None for e in frames)


# --- tolerant lengths: the known prefix decodes, the rest is kept --------------------------------


@pytest.mark.parametrize("appended", [b"", b"\x01", b"\x00\x00\x03\xe8", bytes(37)])
def test_alarm_of_any_longer_length_decodes_its_prefix(appended: bytes) -> None:
    # Real 0x16 alarms come with 31, 33, 40 and 69 content bytes (issue 19).
    frame = build(0x16, GPS + b"\x09" + LBS + STATUS + appended, serial=3)
    event = only_frame(feed_whole(CODEC, frame))
    [reading] = event.readings
    assert reading.alarms == (Alarm("sos", "critical", "tcu", 1),)
    assert reading.attrs["cell_id"] == 0x1F72
    assert reading.attrs.get("extra") == (appended.hex() or None)
    assert event.reply == short_reply(0x16, 3)


def test_alarm_without_language_byte_decodes() -> None:
    frame = build(0x16, GPS + b"\x09" + LBS + STATUS[:4])
    [reading] = only_frame(feed_whole(CODEC, frame)).readings
    assert "language" not in reading.attrs
    assert reading.metrics["voltage_level"] == 3


@pytest.mark.parametrize("appended", [b"\x00", b"\x00\x19\x00", bytes(11)])
def test_heartbeat_of_any_longer_length_decodes_its_prefix(appended: bytes) -> None:
    frame = build(0x13, STATUS + appended, serial=9)
    event = only_frame(feed_whole(CODEC, frame))
    [reading] = event.readings
    assert (reading.kind, reading.metrics["gsm_signal"]) == ("heartbeat", 2)
    assert reading.attrs["extra"] == appended.hex()
    assert reading.alarms == ()  # a heartbeat reports the alarm byte as state
    assert event.reply == short_reply(0x13, 9)


def test_location_0x22_without_its_tail_decodes() -> None:
    # The oldest firmwares end 0x22 after the LBS block (no ACC, upload mode, re-upload).
    frame = build(0x22, GPS + LBS)
    [reading] = only_frame(feed_whole(CODEC, frame)).readings
    assert reading.attrs["lac"] == 0x287D
    assert "upload_mode" not in reading.attrs


def test_location_0x22_with_mileage() -> None:
    frame = build(0x22, GPS + LBS + bytes((1, 2, 0)) + struct.pack(">I", 123_456))
    [reading] = only_frame(feed_whole(CODEC, frame)).readings
    assert reading.metrics["odometer_m"] == 123_456
    assert reading.metrics["ignition"] is True
    assert (reading.attrs["upload_mode"], reading.attrs["reupload"]) == (2, False)
    assert only_frame(feed_whole(CODEC, frame)).reply == b""  # no reply for locations


def test_location_4g_0xa0_field_by_field() -> None:
    # JM-VL03 sheet: MCC 2 (bit 15: 2-byte MNC), MNC, LAC 4, cell id 8, ACC, mode, re-upload.
    lbs = struct.pack(">HBIQ", 404, 45, 0x1234, 0x0102030405)
    frame = build(0xA0, GPS + lbs + bytes((0, 0x0A, 1)))
    event = only_frame(feed_whole(CODEC, frame))
    [reading] = event.readings
    assert (reading.attrs["mcc"], reading.attrs["mnc"]) == (404, 45)
    assert (reading.attrs["lac"], reading.attrs["cell_id"]) == (0x1234, 0x0102030405)
    assert reading.metrics["ignition"] is False
    assert reading.attrs["upload_mode"] == 0x0A
    assert reading.position is not None and reading.position.lat == pytest.approx(
        0x027AC887 / 1_800_000
    )
    assert event.reply == b""


@pytest.mark.parametrize("protocol", [0x2D, 0x31])
def test_locations_laid_out_as_0x22(protocol: int) -> None:
    frame = build(protocol, GPS + LBS + bytes((1, 0, 1)))
    event = only_frame(feed_whole(CODEC, frame))
    [reading] = event.readings
    assert (reading.kind, reading.attrs["cell_id"], reading.attrs["reupload"]) == (
        "telemetry",
        0x1F72,
        True,
    )
    assert event.reply == b""


def test_jimi_4g_heartbeat_0x36_keeps_language_and_modules() -> None:
    modules = b"\x02" + b"\x00\x18\x02\x01\x7d"  # language, then module 0x0018 (battery)
    frame = build(0x36, bytes((0x44, 4, 3, 0)) + modules, serial=11)
    event = only_frame(feed_whole(CODEC, frame))
    [reading] = event.readings
    assert (reading.kind, reading.alarms, reading.metrics["voltage_level"]) == ("heartbeat", (), 4)
    assert (reading.attrs["language"], reading.attrs["extra"]) == (2, "001802017d")
    assert event.reply == short_reply(0x36, 11)


def test_lw4g_status_0xa2_field_by_field() -> None:
    # GPS, 4G LBS, network indicator, terminal info, power 0.01 V, battery %, GSM, alarm,
    # language, odometer, hours, terminal id, inputs (59 bytes).
    lbs = struct.pack(">HBIQ", 404, 45, 0x10, 0x20)
    status = bytes((1, 0x06)) + struct.pack(">H", 1234) + bytes((88, 4, 0x01, 2))
    tail = struct.pack(">II", 5000, 7) + bytes(8) + b"\x00\x01"
    frame = build(0xA2, GPS + lbs + status + tail, serial=12)
    event = only_frame(feed_whole(CODEC, frame))
    [reading] = event.readings
    assert reading.kind == "alarm"
    assert reading.alarms == (Alarm("sos", "critical", "tcu", 1),)
    assert (reading.metrics["external_voltage_v"], reading.metrics["battery_level"]) == (12.34, 88)
    assert (reading.metrics["ignition"], reading.metrics["charging"]) == (True, True)
    assert (reading.attrs["network"], reading.attrs["lac"], reading.attrs["cell_id"]) == (1, 16, 32)
    assert reading.attrs["language"] == 2
    assert reading.attrs["extra"] == tail.hex()  # odometer, hours, terminal id, inputs: kept
    assert event.reply == short_reply(0xA2, 12)


def test_lbs_alarm_without_gps_has_no_position() -> None:
    frame = build(0x19, LBS + STATUS, serial=4)
    event = only_frame(feed_whole(CODEC, frame))
    [reading] = event.readings
    assert (reading.kind, reading.position, reading.ts_ms) == ("alarm", None, None)
    assert reading.alarms == (Alarm("sos", "critical", "tcu", 1),)
    assert event.reply == short_reply(0x19, 4)


def test_az735_without_fix_keeps_the_time_and_cell() -> None:
    content = bytes.fromhex("1106170c1b18") + b"\x00" + b"\x09" + LBS + b"\x20\x00\x00\xa4\x00"
    frame = build(0x33, content, serial=2, long=True)
    event = only_frame(feed_whole(CODEC, frame))
    [reading] = event.readings
    assert reading.position is None
    assert reading.attrs["cell_id"] == 0x1F72
    assert reading.alarms == (Alarm("az735_0xa4", "warning", "tcu", 0xA4),)
    assert event.reply == long_reply(0x33, b"\x00\x02")


def test_information_0x94_door_and_iccid() -> None:
    door = only_frame(feed_whole(CODEC, build(0x94, b"\x05\x01", long=True)))
    assert door.readings[0].metrics["door_open"] is True
    ids = bytes.fromhex("0353413532150362" + "0460001234567890" + "89860012345678901234")
    info = only_frame(feed_whole(CODEC, build(0x94, b"\x0a" + ids, long=True)))
    attrs = info.readings[0].attrs
    assert (attrs["imei"], attrs["iccid"]) == ("353413532150362", "89860012345678901234")
    assert door.reply == info.reply == b""


def test_time_request_is_unanswered_without_a_clock() -> None:
    frame = build(0x8A, b"", serial=6)
    event = only_frame(feed_whole(Gt06Codec(CodecOptions()), frame))
    assert (event.reply, event.readings, event.error_code) == (b"", (), None)


def test_login_with_a_type_id_only_logs_in_and_keeps_it() -> None:
    frame = build(0x01, bytes.fromhex("0123456789012345") + b"\x36\x08", serial=1)
    [login] = feed_whole(CODEC, frame)
    assert isinstance(login, Login)
    assert login.device_id == LOGIN_IMEI
    assert login.readings == (Reading("login", None, attrs={"extra": "3608"}),)


# --- unknown types: kept raw, counted by type ---------------------------------------------------


@pytest.mark.parametrize("protocol", [0x17, 0x2A, 0x80, 0xF3])
def test_unknown_type_is_kept_raw_with_its_type_in_the_error_code(protocol: int) -> None:
    frame = build(protocol, b"\x01\x02\x03", serial=5)
    event = only_frame(feed_whole(CODEC, frame))
    assert (event.readings, event.reply) == ((), b"")
    # The code is the decode-error metric's reason label: bounded (one per protocol number).
    assert event.error_code == f"unknown_type_0x{protocol:02x}"
    with pytest.raises(DecodeError) as info:
        CODEC.decode(frame)
    assert info.value.code == event.error_code


def test_multi_cell_0xa2_lists_4g_cells_and_wifi() -> None:
    # GK310: date-time, MCC, MNC, 7 x (LAC 4, cell 8, signal 1), timing advance, Wi-Fi.
    cells = struct.pack(">IQB", 0x10, 0x20, 50) + bytes(13 * 6)
    wifi = b"\x01" + bytes.fromhex("a0b1c2d3e4f5") + b"\x40"
    frame = build(0xA2, GPS[:6] + struct.pack(">HB", 404, 45) + cells + b"\x03" + wifi, serial=2)
    event = only_frame(feed_whole(CODEC, frame))
    [reading] = event.readings
    assert (reading.kind, reading.position) == ("telemetry", None)
    assert reading.attrs["cells"] == "16:32:50"
    assert reading.attrs["wifi"] == "a0:b1:c2:d3:e4:f5:64"
    assert event.reply == short_reply(0xA2, 2)


# --- model variants ----------------------------------------------------------------------------


def test_voltage_heartbeat_variant_reads_the_supply_voltage() -> None:
    codec = Gt06Codec(CodecOptions(variant="voltage_heartbeat"))
    frame = build(0x13, bytes((0x46, 0x04, 0xB0, 3, 0, 2)))
    [reading] = only_frame(feed_whole(codec, frame)).readings
    assert reading.metrics["external_voltage_v"] == 12.0
    assert reading.metrics["gsm_signal"] == 3
    [standard] = only_frame(feed_whole(CODEC, frame)).readings
    assert standard.metrics["voltage_level"] == 4


def test_imei_location_variant_reads_the_imei_before_the_gps_block() -> None:
    codec = Gt06Codec(CodecOptions(variant="imei_location"))
    frame = build(0x12, bytes.fromhex("0123456789012345") + GPS + LBS)
    [reading] = only_frame(feed_whole(codec, frame)).readings
    assert reading.attrs["imei"] == LOGIN_IMEI
    assert reading.attrs["cell_id"] == 0x1F72
    assert reading.ts_ms == 1321367789000  # 2011-11-15 14:36:29 UTC


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown gt06 variant 'gt99'"):
        Gt06Codec(CodecOptions(variant="gt99"))


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    protocol=st.integers(0, 255),
    content=st.binary(max_size=200),
    long=st.booleans(),
)
def test_any_content_with_a_valid_crc_is_a_frame_never_an_exception(
    protocol: int, content: bytes, long: bool
) -> None:
    frame = build(protocol, content, long=long)
    events = feed_whole(CODEC, frame)
    assert len(events) == 1
    event = events[0]
    assert event.payload == frame  # type: ignore[union-attr]
    if isinstance(event, Frame):
        if event.error_code is None:
            assert event.readings == CODEC.decode(frame)
        else:
            with pytest.raises(DecodeError):
                CODEC.decode(frame)


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(FRAMES), appended=st.binary(min_size=1, max_size=40))
def test_appending_bytes_to_a_capture_keeps_its_decoded_prefix(
    case: bytes, appended: bytes
) -> None:
    header = 3 if case[1] == 0x78 else 4
    protocol, content = case[header], case[header + 1 : -6]
    # Appended bytes may hold a whole 0x70 module (even another fix), and the JC100 alarm's
    # form (with or without GPS) is told by its length.
    assume(protocol not in (0x70, 0x95))
    longer = build(
        protocol, content + appended, serial=int.from_bytes(case[-6:-4], "big"), long=header == 4
    )
    [original] = CODEC.decode(case) or [None]
    decoded = CODEC.decode(longer)
    if original is None:
        assert decoded == ()
        return
    [reading] = decoded
    assert (reading.kind, reading.ts_ms, reading.position) == (
        original.kind,
        original.ts_ms,
        original.position,
    )
