"""Teltonika codec: bytes in, events out, checked against real captures and fuzzed."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parser.codec import CodecOptions
from parser.crc import crc16_arc
from parser.errors import DecodeError
from parser.events import Action, Event, Frame, Login, Reject
from parser.records import Alarm, Reading
from parser.teltonika import DEFAULT_MAX_FRAME_BYTES, TeltonikaCodec
from tests.parser.streams import feed_three_ways, feed_whole, load_vectors

VECTORS = load_vectors("teltonika")
BY_NAME = {case["name"]: case for case in VECTORS}
LOGINS = [case for case in VECTORS if case["expect"]["kind"] == "imei_login"]
ACCEPTED = [
    case for case in VECTORS if case["expect"]["kind"] == "avl_data" and case["expect"]["accept"]
]
REJECTED = [
    case
    for case in VECTORS
    if case["expect"]["kind"] == "avl_data" and not case["expect"]["accept"]
]
# The vectors name the length error after its cause; the session reports the shorter metric label.
REJECT_REASONS = {r: r for r in ("crc_mismatch", "data_field_length_mismatch")}

CODEC = TeltonikaCodec(CodecOptions())
IMEI = "356307042441013"
LOGIN = bytes.fromhex(BY_NAME["teltonika_login_imei_wiki"]["hex"])
WIKI_1 = bytes.fromhex(BY_NAME["codec8_wiki_example_1"]["hex"])
WIKI_3 = bytes.fromhex(BY_NAME["codec8_wiki_example_3_two_records"]["hex"])
MOVING = bytes.fromhex(BY_NAME["codec8_traccar_real_gps_moving"]["hex"])
VALID_FRAMES = [bytes.fromhex(case["hex"]) for case in ACCEPTED]


def names(cases: list[dict[str, Any]]) -> list[str]:
    return [case["name"] for case in cases]


def packet(data: bytes) -> bytes:
    """An AVL packet around ``data`` (codec id .. NoD2) with a correct length and CRC."""
    return struct.pack(">II", 0, len(data)) + data + struct.pack(">I", crc16_arc(data))


def body(frame: bytes) -> bytearray:
    """The data field of an AVL packet (codec id .. NoD2), to edit."""
    return bytearray(frame[8:-4])


def only(events: list[Event]) -> Event:
    assert len(events) == 1, events
    return events[0]


def only_frame(events: list[Event]) -> Frame:
    event = only(events)
    assert isinstance(event, Frame), event
    return event


def only_reject(events: list[Event]) -> Reject:
    event = only(events)
    assert isinstance(event, Reject), event
    return event


def assert_record(reading: Reading, expected: dict[str, Any]) -> None:
    assert reading.ts_ms == expected["timestamp_ms"]
    assert reading.kind == ("alarm" if expected["priority"] == 2 else "telemetry")
    assert reading.attrs == {
        "priority": expected["priority"],
        "event_io_id": expected["event_io_id"],
    }
    position = reading.position
    assert position is not None
    assert position.lat == pytest.approx(expected["latitude_raw"] / 1e7, abs=1e-9)
    assert position.lon == pytest.approx(expected["longitude_raw"] / 1e7, abs=1e-9)
    assert position.lat == pytest.approx(expected["latitude"], abs=1e-9)
    assert position.lon == pytest.approx(expected["longitude"], abs=1e-9)
    assert position.alt_m == expected["altitude"]
    assert position.heading_deg == expected["angle"]
    assert position.satellites == expected["satellites"]
    assert position.speed_kmh == expected["speed"]
    assert position.valid is (expected["satellites"] > 0)
    assert reading.metrics["speed_kmh"] == expected["speed"]
    assert reading.io == expected["io"]
    assert list(reading.io) == list(expected["io"]), "io keys must keep wire order"
    assert len(reading.io) == expected["n_total_io"]


# --- the captured vectors -------------------------------------------------------------------


@pytest.mark.parametrize("case", LOGINS, ids=names(LOGINS))
def test_login_vector(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    imei = case["expect"]["imei"]
    session = CODEC.session()
    events = session.feed(data)
    assert events == [Login(imei, bytes.fromhex(case["expect"]["server_reply_hex"]), data, ())]
    assert session.device_id == imei
    assert session.buffered_bytes == 0


@pytest.mark.parametrize("case", LOGINS, ids=names(LOGINS))
def test_login_vector_refused_by_allow_list(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    codec = TeltonikaCodec(CodecOptions(allowed_devices=frozenset({"000000000000000"})))
    session = codec.session()
    reject = only_reject(session.feed(data))
    assert reject.reason == "device_refused"
    assert reject.action is Action.CLOSE
    assert reject.reply == bytes.fromhex(case["expect"]["server_reply_hex_if_rejected"]) == b"\x00"
    assert reject.skipped_bytes == len(data)
    assert session.device_id is None
    # A refused connection is finished: whatever follows is not framed any more.
    assert session.feed(WIKI_1) == []
    assert session.eof() == []


@pytest.mark.parametrize("case", LOGINS, ids=names(LOGINS))
def test_login_vector_in_allow_list(case: dict[str, Any]) -> None:
    imei = case["expect"]["imei"]
    codec = TeltonikaCodec(CodecOptions(allowed_devices=frozenset({imei})))
    login = only(codec.session().feed(bytes.fromhex(case["hex"])))
    assert isinstance(login, Login)
    assert login.device_id == imei
    assert login.reply == b"\x01"


@pytest.mark.parametrize("case", ACCEPTED, ids=names(ACCEPTED))
def test_accepted_vector(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    expect = case["expect"]
    frame = only_frame(CODEC.session().feed(data))
    assert frame.payload == data
    assert frame.device_id is None
    assert frame.reply.hex() == expect["server_reply_hex"]
    assert frame.error_code is None
    assert frame.error_detail is None
    assert len(frame.readings) == expect["number_of_records"]
    assert_record(frame.readings[0], expect["first_record"])
    if "record_timestamps_ms" in expect:
        assert [r.ts_ms for r in frame.readings] == expect["record_timestamps_ms"]


@pytest.mark.parametrize("case", REJECTED, ids=names(REJECTED))
def test_rejected_vector(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    session = CODEC.session()
    reject = only_reject(session.feed(data))
    assert reject.reason == REJECT_REASONS[case["expect"]["reason"]]
    assert reject.reply == b""
    if reject.reason == "crc_mismatch":
        # The length framing is intact: the packet is dropped whole and reading goes on.
        assert reject.action is Action.RESYNC
        assert reject.skipped_bytes == len(data)
        assert f"computed {case['expect']['crc']['computed_hex']}" in reject.detail
    else:
        assert reject.action is Action.CLOSE
        assert reject.skipped_bytes == 8
    assert session.buffered_bytes == 0


@pytest.mark.parametrize("case", LOGINS + ACCEPTED, ids=names(LOGINS + ACCEPTED))
def test_valid_vector_three_ways(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    if case["expect"]["kind"] == "imei_login":
        # The first bytes of another login: long enough to be known as one, too short to finish.
        events = feed_three_ways(CODEC, data, LOGIN[:9])
        assert events == [Login(case["expect"]["imei"], b"\x01", data)]
        return
    events = feed_three_ways(CODEC, LOGIN + data, WIKI_1[:20])
    assert len(events) == 2
    assert events[0] == Login(IMEI, b"\x01", LOGIN)
    frame = events[1]
    assert isinstance(frame, Frame)
    assert frame.device_id == IMEI
    assert frame.payload == data
    assert frame.reply.hex() == case["expect"]["server_reply_hex"]
    assert len(frame.readings) == case["expect"]["number_of_records"]


# --- stream grammar ---------------------------------------------------------------------------


def test_keep_alive_bytes_between_frames_are_skipped() -> None:
    session = CODEC.session()
    events = session.feed(b"\xff" + LOGIN + b"\xff" + WIKI_1 + b"\xff\xff" + WIKI_3 + b"\xff")
    assert [type(e) for e in events] == [Login, Frame, Frame]
    assert [e.reply for e in events] == [b"\x01", b"\x00\x00\x00\x01", b"\x00\x00\x00\x02"]
    assert session.buffered_bytes == 0
    assert session.eof() == []


def test_two_frames_in_one_buffer() -> None:
    events = feed_whole(CODEC, WIKI_1 + MOVING)
    assert len(events) == 2
    first, second = events
    assert isinstance(first, Frame)
    assert isinstance(second, Frame)
    assert (first.payload, second.payload) == (WIKI_1, MOVING)
    assert second.readings[0].ts_ms == 1546604839000


def test_frames_carry_the_logged_in_device_id() -> None:
    session = CODEC.session()
    assert only_frame(session.feed(WIKI_1)).device_id is None
    assert session.device_id is None
    session.feed(LOGIN)
    assert session.device_id == IMEI
    assert only_frame(session.feed(WIKI_1)).device_id == IMEI


def test_crc_mismatch_drops_one_packet_and_reading_goes_on() -> None:
    bad = bytes.fromhex(BY_NAME["codec8_bad_crc_synthetic"]["hex"])
    session = CODEC.session()
    events = session.feed(LOGIN + bad + WIKI_1)
    assert [type(e) for e in events] == [Login, Reject, Frame]
    reject = events[1]
    assert isinstance(reject, Reject)
    assert (reject.reason, reject.action, reject.skipped_bytes) == (
        "crc_mismatch",
        Action.RESYNC,
        len(bad),
    )
    assert events[2] == Frame(IMEI, WIKI_1, b"\x00\x00\x00\x01", CODEC.decode(WIKI_1))


def test_crc_field_upper_bytes_must_be_zero() -> None:
    bad = WIKI_1[:-4] + b"\x00\x01" + WIKI_1[-2:]
    assert only_reject(CODEC.session().feed(bad)).reason == "crc_mismatch"


def test_codec12_response_is_a_command_reply_kept_without_ack() -> None:
    reply_text = b"DOUT1:1 Timeout:INFINITY"
    frame = packet(b"\x0c\x01\x06" + struct.pack(">I", len(reply_text)) + reply_text + b"\x01")
    event = only_frame(CODEC.session().feed(frame))
    assert event.payload == frame
    assert event.reply == b""
    assert event.error_code is None
    assert [(r.kind, r.attrs["text"]) for r in event.readings] == [
        ("command_reply", "DOUT1:1 Timeout:INFINITY")
    ]


def test_codec16_frame_is_acked_with_its_count_even_when_its_body_is_bad() -> None:
    frame = packet(b"\x10\x02" + bytes(40) + b"\x02")
    event = only_frame(CODEC.session().feed(frame))
    assert event.reply == b"\x00\x00\x00\x02"
    assert event.readings == ()
    assert event.error_code == "bad_body"


def test_codec14_is_kept_raw_as_unsupported_without_ack() -> None:
    frame = packet(b"\x0e\x01\x06\x00\x00\x00\x01A\x01")
    event = only_frame(CODEC.session().feed(frame))
    assert (event.reply, event.readings, event.error_code) == (b"", (), "unsupported_codec")


@pytest.mark.parametrize(
    ("offset", "value", "detail"),
    [
        (-1, 2, "NoD1 1 != NoD2 2"),  # NoD2
        (27, 6, "total says 6"),  # total IO count of the only record
        (28, 60, "overruns"),  # the 1-byte group claims 60 pairs
    ],
)
def test_frame_with_valid_crc_but_bad_body_is_kept_and_acked(
    offset: int, value: int, detail: str
) -> None:
    data = body(WIKI_1)
    data[offset] = value
    frame = packet(bytes(data))
    event = only_frame(CODEC.session().feed(frame))
    assert event.payload == frame
    assert event.readings == ()
    assert event.error_code == "bad_body"
    assert event.error_detail is not None and detail in event.error_detail
    # ACKed all the same: the raw packet is kept, and no ACK means endless resends (#5574).
    assert event.reply == b"\x00\x00\x00\x01"


def test_records_must_end_exactly_at_nod2() -> None:
    data = body(WIKI_1)
    data[-1:-1] = b"\x00"  # one stray byte between the last record and NoD2
    event = only_frame(CODEC.session().feed(packet(bytes(data))))
    assert event.error_code == "bad_body"
    assert event.error_detail is not None and "NoD2 is at byte" in event.error_detail


def test_more_records_announced_than_present() -> None:
    data = body(WIKI_1)
    data[1] = data[-1] = 2
    event = only_frame(CODEC.session().feed(packet(bytes(data))))
    assert event.error_code == "bad_body"
    assert event.reply == b"\x00\x00\x00\x02"


def test_oversize_length_is_rejected_as_soon_as_the_header_is_read() -> None:
    session = CODEC.session()
    header = struct.pack(">II", 0, 1_000_000)
    assert session.feed(header[:7]) == []
    assert session.buffered_bytes == 7
    reject = only_reject(session.feed(header[7:] + bytes(100)))
    assert (reject.reason, reject.action, reject.skipped_bytes) == ("oversize", Action.CLOSE, 8)
    assert "1000012 bytes exceeds 16384" in reject.detail
    assert session.buffered_bytes == 0
    assert session.feed(bytes(1000)) == []
    assert session.buffered_bytes == 0


def test_max_frame_bytes_bounds_the_whole_packet() -> None:
    assert CODEC.max_frame_bytes == DEFAULT_MAX_FRAME_BYTES == 16384
    exact = TeltonikaCodec(CodecOptions(max_frame_bytes=len(WIKI_1)))
    assert only_frame(exact.session().feed(WIKI_1)).payload == WIKI_1
    short = TeltonikaCodec(CodecOptions(max_frame_bytes=len(WIKI_1) - 1))
    assert only_reject(short.session().feed(WIKI_1)).reason == "oversize"


def test_max_frame_bytes_must_hold_the_longest_login() -> None:
    with pytest.raises(ValueError, match="at least 22"):
        TeltonikaCodec(CodecOptions(max_frame_bytes=21))


def test_bad_length_closes_without_waiting_for_the_data() -> None:
    session = CODEC.session()
    reject = only_reject(session.feed(struct.pack(">II", 0, 2)))
    assert (reject.reason, reject.action) == ("data_field_length_mismatch", Action.CLOSE)


def test_non_zero_preamble_closes() -> None:
    session = CODEC.session()
    reject = only_reject(session.feed(b"\x00\x00\x00\x01" + WIKI_1[4:]))
    assert (reject.reason, reject.action, reject.skipped_bytes) == (
        "bad_preamble",
        Action.CLOSE,
        8,
    )
    assert session.buffered_bytes == 0


def test_login_longer_than_an_imei_closes_after_two_bytes() -> None:
    session = CODEC.session()
    reject = only_reject(session.feed(b"\x00\x15"))
    assert (reject.reason, reject.action, reject.skipped_bytes) == ("bad_login", Action.CLOSE, 2)
    assert session.device_id is None


@pytest.mark.parametrize("imei", [b"35630704244101A", b"35630704244101\xd9", b"3563070424410 3"])
def test_login_must_be_ascii_digits(imei: bytes) -> None:
    session = CODEC.session()
    reject = only_reject(session.feed(b"\x00\x0f" + imei))
    assert (reject.reason, reject.action, reject.skipped_bytes) == ("bad_login", Action.CLOSE, 17)
    assert session.device_id is None


def test_eof_inside_a_frame_reports_truncated() -> None:
    session = CODEC.session()
    session.feed(LOGIN + WIKI_1[:20])
    assert session.buffered_bytes == 20
    reject = only_reject(session.eof())
    assert (reject.reason, reject.action, reject.skipped_bytes) == ("truncated", Action.CLOSE, 20)
    assert "20 bytes of an incomplete frame" in reject.detail
    assert session.buffered_bytes == 0
    assert session.eof() == []


def test_eof_between_frames_is_clean() -> None:
    session = CODEC.session()
    session.feed(LOGIN + WIKI_1 + b"\xff")
    assert session.eof() == []


def test_a_session_holds_a_buffer_only_while_a_frame_is_split() -> None:
    # One session per connection, most of them idle: no partial-frame buffer until one is split.
    session = CODEC.session()
    assert isinstance(only(session.feed(LOGIN)), Login)
    assert session._rest is None
    assert session.feed(WIKI_1[:20]) == []
    assert session.buffered_bytes == 20
    assert isinstance(only(session.feed(WIKI_1[20:])), Frame)
    assert session.buffered_bytes == 0


# --- decoding ---------------------------------------------------------------------------------


def test_decode_is_pure_and_matches_the_session() -> None:
    frame = only_frame(CODEC.session().feed(MOVING))
    assert CODEC.decode(MOVING) == frame.readings
    assert CODEC.decode(MOVING) == TeltonikaCodec(CodecOptions()).decode(MOVING)


def test_well_known_io_become_metrics() -> None:
    (moving,) = CODEC.decode(MOVING)
    assert moving.metrics == {
        "speed_kmh": 83,
        "movement": True,
        "gsm_signal": 3,
        "external_voltage_v": 14.233,
        "battery_voltage_v": 3.976,
        "odometer_km": 2656.224,
    }
    cape_town = bytes.fromhex(BY_NAME["codec8e_traccar_south_latitude_two_records"]["hex"])
    assert CODEC.decode(cape_town)[0].metrics == {
        "speed_kmh": 0,
        "movement": False,
        "gsm_signal": 0,
        "battery_voltage_v": 3.414,
        "battery_current_a": 0.0,
        "battery_level_pct": 1,
    }
    vilnius = bytes.fromhex(BY_NAME["codec8e_wiki_2018_example_with_gps_and_nx"]["hex"])
    assert CODEC.decode(vilnius)[0].metrics == {
        "speed_kmh": 0,
        "ignition": False,
        "odometer_km": 52.191,
    }


def test_nx_element_is_a_hex_string_and_not_a_metric() -> None:
    # An NX element whose id is also a well-known 2-byte id (66, external voltage).
    record = bytes(8) + b"\x01" + bytes(15) + b"\x00\x42\x00\x01" + bytes(8)
    record += b"\x00\x01\x00\x42\x00\x03\xab\xcd\xef"
    (reading,) = CODEC.decode(packet(b"\x8e\x01" + record + b"\x01"))
    assert reading.io == {"66": "abcdef"}
    assert reading.metrics == {"speed_kmh": 0}
    assert reading.attrs == {"priority": 1, "event_io_id": 66}


def test_panic_priority_is_an_alarm() -> None:
    data = body(WIKI_1)
    data[10] = 2  # priority, after codec id, NoD1 and the 8-byte timestamp
    (reading,) = CODEC.decode(packet(bytes(data)))
    assert reading.kind == "alarm"
    assert reading.alarms == (Alarm("teltonika_panic", "critical", "tcu", 1),)
    assert reading.attrs == {"priority": 2, "event_io_id": 1}
    (telemetry,) = CODEC.decode(WIKI_1)
    assert (telemetry.kind, telemetry.alarms) == ("telemetry", ())


def test_position_without_fix_is_marked_invalid() -> None:
    (reading,) = CODEC.decode(WIKI_1)
    assert reading.position is not None
    assert (reading.position.satellites, reading.position.valid) == (0, False)


def test_zero_records_decode_to_nothing() -> None:
    frame = packet(b"\x08\x00\x00")
    event = only_frame(CODEC.session().feed(frame))
    assert (event.readings, event.reply, event.error_code) == ((), bytes(4), None)


@pytest.mark.parametrize(
    "payload",
    [b"", LOGIN, WIKI_1[:-1], WIKI_1 + b"\x00", b"\x00\x00\x00\x01" + WIKI_1[4:], bytes(15)],
)
def test_decode_rejects_what_is_not_one_avl_packet(payload: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        CODEC.decode(payload)
    assert info.value.code == "bad_body"


# --- properties ---------------------------------------------------------------------------------


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, where, value in edits:
        i = where % (len(buf) + 1)
        if op == 0 and i < len(buf):
            buf[i] ^= value or 0x80
        elif op == 1:
            buf.insert(i, value)
        elif i < len(buf):
            del buf[i]
    return bytes(buf)


def feed_checked(codec: TeltonikaCodec, chunks: list[bytes]) -> list[Event]:
    session = codec.session()
    events: list[Event] = []
    for chunk in chunks:
        events.extend(session.feed(chunk))
        assert session.buffered_bytes <= codec.max_frame_bytes
    events.extend(session.eof())
    assert session.buffered_bytes == 0
    for event in events:
        assert isinstance(event, Login | Frame | Reject)
    return events


SMALL_CODEC = TeltonikaCodec(CodecOptions(max_frame_bytes=128))
codecs = st.sampled_from([CODEC, SMALL_CODEC])
cuts = st.lists(st.integers(min_value=0), max_size=12)
edits = st.lists(
    st.tuples(st.integers(0, 2), st.integers(min_value=0), st.integers(0, 255)),
    min_size=1,
    max_size=6,
)
# A valid stream: the login, then AVL packets and keep-alives in any order.
parts = st.lists(st.sampled_from([*VALID_FRAMES, b"\xff"]), max_size=6)
streams = parts.map(lambda chosen: LOGIN + b"".join(chosen))


@settings(max_examples=300, deadline=None)
@given(codec=codecs, data=st.binary(max_size=400), cuts=cuts)
def test_random_bytes_never_raise(codec: TeltonikaCodec, data: bytes, cuts: list[int]) -> None:
    # Rejects count the bytes of what they reject, so even hostile input frames the same way
    # however it is chunked.
    assert feed_checked(codec, chunked(data, cuts)) == feed_checked(codec, [data])


@settings(max_examples=300, deadline=None)
@given(codec=codecs, stream=streams, edits=edits, cuts=cuts)
def test_mutated_streams_never_raise(
    codec: TeltonikaCodec, stream: bytes, edits: list[tuple[int, int, int]], cuts: list[int]
) -> None:
    data = mutate(stream, edits)
    assert feed_checked(codec, chunked(data, cuts)) == feed_checked(codec, [data])


@settings(max_examples=300, deadline=None)
@given(frame=st.sampled_from(VALID_FRAMES), edits=edits)
def test_mutated_bodies_with_valid_crc_decode_or_report(
    frame: bytes, edits: list[tuple[int, int, int]]
) -> None:
    # Re-signing the mutated body gets it past the CRC, so decode itself meets the hostile bytes.
    data = mutate(bytes(body(frame)), edits)
    if len(data) < 3:
        data = bytes(3)
    event = only(feed_checked(CODEC, [packet(data)]))
    assert isinstance(event, Frame)
    if event.error_code is None:
        assert len(event.readings) == data[1]
    else:
        # bad_position: a codec 7 (GH3000) body whose coordinates the edits put out of range.
        assert event.error_code in {"bad_body", "unsupported_codec", "bad_position"}
        assert event.readings == ()


@settings(max_examples=300, deadline=None)
@given(chosen=parts, cuts=cuts)
def test_any_chunking_of_a_valid_stream_gives_the_whole_buffer_events(
    chosen: list[bytes], cuts: list[int]
) -> None:
    stream = LOGIN + b"".join(chosen)
    whole = CODEC.session().feed(stream)
    frames = [part for part in chosen if part != b"\xff"]
    assert whole[0] == Login(IMEI, b"\x01", LOGIN)
    assert [e.payload for e in whole[1:] if isinstance(e, Frame)] == frames
    assert len(whole) == 1 + len(frames)
    assert all(isinstance(e, Frame) and e.device_id == IMEI for e in whole[1:])
    assert feed_checked(CODEC, chunked(stream, cuts)) == whole
