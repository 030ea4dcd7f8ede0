"""GT06 codec: bytes in, events out, checked against the captures in ``tests/data/vectors``."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from parser.codec import CodecOptions
from parser.crc import crc16_x25
from parser.errors import DecodeError
from parser.events import Action, Event, Frame, Login, Reject
from parser.gt06 import Gt06Codec
from parser.records import Alarm, Reading
from parser.resync import find_sync, garbage
from tests.parser.gt06_frames import LOGIN, LOGIN_IMEI, build, only_frame, short_reply
from tests.parser.streams import feed_bytewise, feed_three_ways, feed_whole, load_vectors

CASES = load_vectors("gt06")
BY_NAME = {case["name"]: case for case in CASES}
ACCEPTED = [case for case in CASES if case["expect"]["accept"]]
FRAMES = {case["name"]: bytes.fromhex(case["hex"]) for case in CASES}
VALID_FRAMES = [FRAMES[case["name"]] for case in ACCEPTED]

LOCATION = FRAMES["gt06_location_doc_appendix_b"]
HEARTBEAT = FRAMES["gt06_status_doc_appendix_b"]
BAD_CRC = FRAMES["gt06_location_bad_crc_doc_table_example"]
MARKERS = (b"\x78\x78", b"\x79\x79")

CODEC = Gt06Codec(CodecOptions())


def only_reading(frame: Frame) -> Reading:
    assert frame.error_code is None, frame.error_detail
    assert len(frame.readings) == 1
    return frame.readings[0]


def reply_of(expect: dict[str, Any]) -> bytes:
    reply_hex = expect["reply_hex"]
    return b"" if reply_hex is None else bytes.fromhex(reply_hex)


def check_gps(reading: Reading, gps: dict[str, Any]) -> None:
    position = reading.position
    assert position is not None
    assert reading.ts_ms == gps["epoch_s"] * 1000
    assert position.lat == pytest.approx(gps["latitude"], abs=1e-6)
    assert position.lon == pytest.approx(gps["longitude"], abs=1e-6)
    assert round(abs(position.lat) * 1_800_000) == gps["latitude_raw"]
    assert round(abs(position.lon) * 1_800_000) == gps["longitude_raw"]
    assert (position.lat >= 0, position.lon >= 0) == (
        gps["hemisphere"][0] == "N",
        gps["hemisphere"][1] == "E",
    )
    assert position.satellites == gps["satellites"]
    assert position.speed_kmh == gps["speed_kmh"]
    assert position.heading_deg == gps["course"]
    assert position.valid is gps["gps_positioned"]
    assert position.alt_m is None
    assert reading.attrs["gps_differential"] is gps["gps_differential"]
    assert reading.metrics["speed_kmh"] == gps["speed_kmh"]


def check_lbs(reading: Reading, lbs: dict[str, Any]) -> None:
    for key in ("mcc", "mnc", "lac", "cell_id"):
        assert reading.attrs[key] == lbs[key], key


def check_status(reading: Reading, status: dict[str, Any]) -> None:
    assert reading.metrics["charging"] is status["charging"]
    assert reading.metrics["ignition"] is status["acc_high"]
    assert reading.metrics["gps_tracking"] is status["gps_tracking_on"]
    assert reading.metrics["power_cut"] is status["oil_electricity_disconnected"]
    assert reading.metrics["voltage_level"] == status["voltage_level"]
    assert reading.metrics["gsm_signal"] == status["gsm_signal"]
    assert reading.attrs["armed"] is status["activated"]
    assert reading.attrs["terminal_alarm_bits"] == status["terminal_alarm_bits"]
    assert reading.attrs["alarm"] == status["alarm"]
    assert reading.attrs["language"] == status["language"]


# --- every vector -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_vector(case: dict[str, Any]) -> None:
    expect = case["expect"]
    data = FRAMES[case["name"]]
    events = feed_whole(CODEC, data)
    kind = expect["kind"]

    if not expect["accept"]:
        assert expect["reason"] == "crc_mismatch"
        assert events == [
            Reject(
                "crc_mismatch",
                f"frame crc {expect['crc']['field_hex']}, computed {expect['crc']['computed_hex']}",
                Action.RESYNC,
                skipped_bytes=len(data),
            )
        ]
        return

    if kind == "login":
        assert len(events) == 1
        login = events[0]
        assert isinstance(login, Login)
        assert login.device_id == expect["imei"]
        assert login.reply == bytes.fromhex(expect["reply_hex"])
        assert login.payload == data
        extra = expect.get("login_extra_hex")
        attrs = {} if extra is None else {"type_id": extra[:4], "tz_language": extra[4:]}
        assert login.readings == (Reading(kind="login", ts_ms=None, attrs=attrs),)
        return

    frame = only_frame(events)
    assert frame.payload == data
    assert frame.device_id is None
    assert frame.reply == reply_of(expect)
    reading = only_reading(frame)
    assert frame.readings == CODEC.decode(data)
    if kind == "location":
        assert reading.kind == "telemetry"
        check_gps(reading, expect["gps"])
        check_lbs(reading, expect["lbs"])
        extra = expect["lbs"]["extra_hex"]
        assert reading.attrs.get("lbs_extra") == (extra or None)
        assert reading.alarms == ()
    elif kind == "status_heartbeat":
        assert reading.kind == "heartbeat"
        assert reading.ts_ms is None
        assert reading.position is None
        check_status(reading, expect["status"])
    elif kind == "other":
        # 0x94 information, sub-type 0x00: the external voltage in 0.01 V (content 00 00ed).
        assert expect["content_hex"] == "0000ed"
        assert (reading.kind, reading.ts_ms, reading.position) == ("telemetry", None, None)
        assert reading.metrics == {"external_voltage_v": 2.37}
        assert reading.attrs == {"information_type": 0}
    else:
        assert kind == "alarm"
        assert reading.kind == "alarm"
        check_gps(reading, expect["gps"])
        check_lbs(reading, expect["lbs"])
        check_status(reading, expect["status"])
        assert len(reading.alarms) == 1
        assert reading.alarms[0].value == expect["status"]["alarm"]
        assert reading.alarms[0].subsystem == "tcu"


def test_alarm_vectors_map_to_codes() -> None:
    sos = only_reading(only_frame(feed_whole(CODEC, FRAMES["gt06_alarm_doc_example_sos"])))
    cut = only_reading(only_frame(feed_whole(CODEC, FRAMES["gt06_alarm_south_west_power_cut"])))
    assert sos.alarms == (Alarm("sos", "critical", "tcu", 1),)
    assert cut.alarms == (Alarm("power_cut", "critical", "tcu", 2),)


@pytest.mark.parametrize("case", ACCEPTED, ids=[case["name"] for case in ACCEPTED])
@pytest.mark.parametrize("trailing", [b"", b"\x78", HEARTBEAT[:7], LOCATION[:20]])
def test_vector_three_ways_after_login(case: dict[str, Any], trailing: bytes) -> None:
    data = FRAMES[case["name"]]
    events = feed_three_ways(CODEC, LOGIN + data, trailing)
    assert len(events) == 2
    assert isinstance(events[0], Login)
    assert events[0].device_id == LOGIN_IMEI
    second = events[1]
    assert second.payload == data  # type: ignore[union-attr]
    if case["expect"]["kind"] == "login":
        assert isinstance(second, Login)
        assert second.device_id == case["expect"]["imei"]
    else:
        assert isinstance(second, Frame)
        assert second.device_id == LOGIN_IMEI
        assert second.reply == reply_of(case["expect"])


def test_bad_crc_three_ways_then_next_frame() -> None:
    events = feed_three_ways(CODEC, BAD_CRC + HEARTBEAT, b"\x78")
    assert [type(e) for e in events] == [Reject, Frame]
    assert isinstance(events[0], Reject)
    assert events[0].reason == "crc_mismatch"
    assert events[0].skipped_bytes == len(BAD_CRC)
    assert events[0].reply == b""
    assert events[1].payload == HEARTBEAT  # type: ignore[union-attr]


def test_wrong_length_byte_is_framed_on_its_crc() -> None:
    data = FRAMES["gt06_status_wrong_length_byte"]
    assert data[2] == 0x08 and len(data) == 15
    events = feed_three_ways(CODEC, data + HEARTBEAT, HEARTBEAT[:5])
    assert [e.payload for e in events] == [data, HEARTBEAT]  # type: ignore[union-attr]
    assert events[0].reply == bytes.fromhex("78780513044d06f90d0a")


# --- resynchronisation --------------------------------------------------------------------------


def test_garbage_before_frame_is_reported_once() -> None:
    junk = b"\x00\xffGARBAGE\r\n\x78\x00\x79\x01"
    events = feed_three_ways(CODEC, junk + LOCATION, b"")
    assert events[0] == garbage(len(junk))
    assert only_frame(events[1:]).payload == LOCATION


def test_garbage_split_across_feeds_is_one_run() -> None:
    session = CODEC.session()
    assert session.feed(b"\x01\x02\x03") == []
    assert session.feed(b"\x04\x78") == []
    assert session.buffered_bytes == 1  # a possible half marker
    assert session.feed(b"\x05\x06") == []
    events = session.feed(HEARTBEAT)
    assert events[0] == garbage(7)
    assert only_frame(events[1:]).payload == HEARTBEAT


def test_eof_reports_trailing_garbage_and_partial_marker() -> None:
    session = CODEC.session()
    assert len(session.feed(HEARTBEAT + b"abc\x78")) == 1
    assert session.eof() == [garbage(4)]
    assert session.buffered_bytes == 0


def test_eof_reports_truncated_frame() -> None:
    session = CODEC.session()
    assert session.feed(b"zz" + LOCATION[:-3]) == [garbage(2)]
    assert session.buffered_bytes == len(LOCATION) - 3
    [reject] = session.eof()
    assert isinstance(reject, Reject)
    assert (reject.reason, reject.action, reject.skipped_bytes) == (
        "truncated",
        Action.CLOSE,
        len(LOCATION) - 3,
    )


def test_no_frame_end_within_bound_is_bad_frame_then_resync() -> None:
    codec = Gt06Codec(CodecOptions(max_frame_bytes=64))
    assert codec.max_frame_bytes == 64
    # 7878 ff declares 260 bytes, more than the bound; no 0d0a with a valid CRC follows.
    junk = b"\x78\x78\xff" + bytes(range(1, 62))
    events = feed_three_ways(codec, junk + HEARTBEAT, HEARTBEAT[:4])
    assert events[0] == Reject(
        "bad_frame",
        "no 0d0a with a valid crc within 64 bytes of 7878",
        Action.RESYNC,
        skipped_bytes=1,
    )
    assert events[1] == garbage(len(junk) - 1)
    assert only_frame(events[2:]).payload == HEARTBEAT


def test_incomplete_frame_waits_below_bound() -> None:
    session = Gt06Codec(CodecOptions(max_frame_bytes=64)).session()
    assert session.feed(b"\x78\x78\xff" + b"\x00" * 60) == []
    assert session.buffered_bytes == 63
    events = session.feed(b"\x00")
    assert [e.reason for e in events if isinstance(e, Reject)] == ["bad_frame"]
    assert session.buffered_bytes <= 64


def test_default_bound() -> None:
    assert CODEC.max_frame_bytes == 1024
    assert CODEC.name == "gt06"
    assert CODEC.transports == frozenset({"tcp"})
    with pytest.raises(ValueError):
        Gt06Codec(CodecOptions(max_frame_bytes=4))


# --- login --------------------------------------------------------------------------------------


def test_allowed_device_logs_in_and_sets_device_id() -> None:
    codec = Gt06Codec(CodecOptions(allowed_devices=frozenset({LOGIN_IMEI})))
    session = codec.session()
    assert session.device_id is None
    [login] = session.feed(LOGIN)
    assert isinstance(login, Login)
    assert session.device_id == LOGIN_IMEI
    assert only_frame(session.feed(HEARTBEAT)).device_id == LOGIN_IMEI


def test_refused_device_is_closed_without_reply() -> None:
    codec = Gt06Codec(CodecOptions(allowed_devices=frozenset({"000000000000000"})))
    session = codec.session()
    events = session.feed(LOGIN + HEARTBEAT)
    assert events == [
        Reject(
            "device_refused",
            f"device {LOGIN_IMEI} is not allowed",
            Action.CLOSE,
            skipped_bytes=len(LOGIN),
        )
    ]
    assert session.device_id is None
    assert session.feed(HEARTBEAT) == []
    assert session.buffered_bytes == 0
    assert session.eof() == []


def test_login_too_short_for_an_imei_is_kept_raw_without_reply() -> None:
    frame = build(0x01, bytes.fromhex("01234567890123"))
    event = only_frame(feed_whole(CODEC, frame))
    assert (event.error_code, event.reply, event.readings, event.payload) == (
        "bad_body",
        b"",
        (),
        frame,
    )


def test_long_form_login_is_answered_in_short_form() -> None:
    frame = build(0x01, bytes.fromhex("0123456789012345"), serial=1, long=True)
    [login] = feed_whole(CODEC, frame)
    assert isinstance(login, Login)
    assert login.device_id == LOGIN_IMEI
    assert login.reply == bytes.fromhex("787805010001d9dc0d0a")


# --- decoding -----------------------------------------------------------------------------------


def test_device_timezone_shifts_timestamps() -> None:
    codec = Gt06Codec(CodecOptions(timezone="Asia/Kolkata"))
    utc = only_reading(only_frame(feed_whole(CODEC, LOCATION)))
    local = only_reading(only_frame(feed_whole(codec, LOCATION)))
    assert utc.ts_ms == 1314639976000
    assert local.ts_ms == 1314639976000 - (5 * 3600 + 30 * 60) * 1000


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "../etc/passwd"])
def test_invalid_timezone_is_refused(name: str) -> None:
    with pytest.raises(ValueError):
        Gt06Codec(CodecOptions(timezone=name))


ALARM_GPS_LBS = bytes.fromhex("0b0b0f0e241dcf027ac8870c4657e60014020901cc00287d001f72")


@pytest.mark.parametrize(
    ("alarm_byte", "expected"),
    [
        (0x00, ()),
        (0x03, (Alarm("vibration", "warning", "tcu", 3),)),
        (0x04, (Alarm("fence_in", "info", "tcu", 4),)),
        (0x05, (Alarm("fence_out", "info", "tcu", 5),)),
        (0x06, (Alarm("overspeed", "warning", "tcu", 6),)),
        (0x09, (Alarm("displacement", "warning", "tcu", 9),)),
        (0x2A, (Alarm("gt06_0x2a", "warning", "tcu", 0x2A),)),
    ],
)
def test_alarm_table(alarm_byte: int, expected: tuple[Alarm, ...]) -> None:
    frame = build(0x16, ALARM_GPS_LBS + bytes((0x86, 3, 2, alarm_byte, 2)), serial=7)
    event = only_frame(feed_whole(CODEC, frame))
    reading = only_reading(event)
    assert reading.alarms == expected
    assert reading.metrics["power_cut"] is True
    assert reading.attrs["terminal_alarm_bits"] == 0
    assert event.reply == short_reply(0x16, 7)


def test_long_form_status_is_answered_in_short_form() -> None:
    frame = build(0x13, bytes.fromhex("4401040001"), serial=5, long=True)
    event = only_frame(feed_whole(CODEC, frame))
    assert event.reply == bytes.fromhex("787805130005afd50d0a")
    assert only_reading(event).metrics["voltage_level"] == 1


@pytest.mark.parametrize(
    ("protocol", "content", "code"),
    [
        (0x13, bytes.fromhex("440104"), "bad_body"),
        (0x12, LOCATION[4:20], "bad_body"),
        (0x16, ALARM_GPS_LBS, "bad_body"),
        (0x12, bytes.fromhex("0b0d1d112e10") + LOCATION[10:30], "bad_body"),  # month 13
        (0x80, b"", "unknown_type_0x80"),
    ],
)
def test_undecodable_frame_is_kept_raw(protocol: int, content: bytes, code: str) -> None:
    frame = build(protocol, content, serial=9)
    event = only_frame(feed_whole(CODEC, frame))
    assert (event.error_code, event.readings, event.payload) == (code, (), frame)
    with pytest.raises(DecodeError) as info:
        CODEC.decode(frame)
    assert info.value.code == code
    # A framed heartbeat or alarm is still acknowledged; location and unknown types never are.
    assert event.reply == (b"" if protocol in (0x12, 0x80) else short_reply(protocol, 9))


def test_decode_refuses_non_frames() -> None:
    for payload in (b"", b"\x78\x78", b"\x00" * 20):
        with pytest.raises(DecodeError) as info:
            CODEC.decode(payload)
        assert info.value.code == "bad_body"


# --- properties ---------------------------------------------------------------------------------


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def run_chunks(codec: Gt06Codec, chunks: list[bytes]) -> list[Event]:
    session = codec.session()
    events: list[Event] = []
    for chunk in chunks:
        events.extend(session.feed(chunk))
        assert session.buffered_bytes <= codec.max_frame_bytes
    events.extend(session.eof())
    assert session.buffered_bytes == 0
    return events


def run_whole(codec: Gt06Codec, data: bytes) -> list[Event]:
    session = codec.session()
    return session.feed(data) + session.eof()


pieces = st.one_of(
    st.sampled_from([*VALID_FRAMES, BAD_CRC]),
    st.binary(max_size=40),
)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """Valid frames, the bad-CRC frame and junk, optionally with bytes flipped, cut or inserted."""
    data = bytearray(b"".join(draw(st.lists(pieces, max_size=8))))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "delete", "insert"]))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "delete":
            del data[at]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


SMALL = Gt06Codec(CodecOptions(max_frame_bytes=48))


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=600), streams()), cuts=st.lists(st.integers(0, 10_000)))
def test_any_bytes_any_chunking_never_raise_and_match_whole(data: bytes, cuts: list[int]) -> None:
    for codec in (CODEC, SMALL):
        events = run_chunks(codec, chunked(data, cuts))
        assert all(isinstance(e, Login | Frame | Reject) for e in events)
        assert events == run_whole(codec, data)


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(st.sampled_from(VALID_FRAMES), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_valid_stream_any_chunking_equals_whole(frames: list[bytes], cuts: list[int]) -> None:
    data = b"".join(frames)
    whole = run_whole(CODEC, data)
    assert [e.payload for e in whole] == frames  # type: ignore[union-attr]
    assert run_chunks(CODEC, chunked(data, cuts)) == whole


@settings(max_examples=300, deadline=None)
@given(
    junk=st.binary(min_size=1, max_size=200),
    frame=st.sampled_from(VALID_FRAMES),
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
)
def test_valid_frame_after_junk_is_found(junk: bytes, frame: bytes, cuts: list[int]) -> None:
    # The junk must not hold a marker, also not one formed with the frame's first byte.
    assume(find_sync(junk + frame, 0, MARKERS) == (len(junk), True))
    events = run_chunks(CODEC, chunked(junk + frame, cuts))
    assert events[0] == garbage(len(junk))
    assert len(events) == 2
    assert events[1].payload == frame  # type: ignore[union-attr]
    assert isinstance(events[1], Login | Frame)


def test_bytewise_equals_whole_for_all_vectors_concatenated() -> None:
    data = b"junk" + b"".join(FRAMES.values()) + b"\x78"
    assert feed_bytewise(CODEC, data) == feed_whole(CODEC, data)


def tolerant_frame(spurious_stops: int) -> bytes:
    """A frame whose length byte is wrong and whose body holds ``spurious_stops`` 0d0a pairs."""
    # Length, type, content, serial; the first pair comes late enough to be a possible end.
    body = b"\xf0\x80\x00\x00\x00" + b"\x00\r\n" * spurious_stops + b"\x00\x01"
    return b"\x78\x78" + body + crc16_x25(body).to_bytes(2, "big") + b"\r\n"


def test_wrong_length_frame_end_found_past_three_false_stops() -> None:
    frame = tolerant_frame(3)
    events = feed_three_ways(CODEC, frame + HEARTBEAT, b"")
    assert events[0] == Frame(None, frame, b"", (), "unknown_type_0x80", "protocol 0x80")
    assert events[1].payload == HEARTBEAT  # type: ignore[union-attr]


def test_start_given_up_after_four_false_stops() -> None:
    # Bounds the CRC work a hostile stream dense in markers and 0d0a pairs can cause.
    frame = tolerant_frame(4)
    events = feed_three_ways(CODEC, frame + HEARTBEAT, b"")
    assert isinstance(events[0], Reject)
    assert (events[0].reason, events[0].skipped_bytes) == ("bad_frame", 1)
    assert events[1] == garbage(len(frame) - 1)
    assert events[2].payload == HEARTBEAT  # type: ignore[union-attr]
    assert len(events) == 3
