"""The ``json`` codec: a document per message, fields found by a mapping; pure decode."""

from __future__ import annotations

import pytest

from parser.codec import CodecOptions
from parser.events import Frame, Reject
from parser.json_codec import JsonCodec, JsonFields
from parser.messages import message_frame
from parser.records import Position, Reading

DEVICE = "356307042441013"


def test_default_mapping_reads_the_canonical_names() -> None:
    codec = JsonCodec(CodecOptions())
    doc = (
        b'{"ts": 1718000000, "lat": 52.5, "lon": 13.4, "speed_kmh": 30, "satellites": 9,'
        b' "metrics": {"soc_pct": 81, "charging": true, "nested": {"x": 1}}}'
    )
    assert codec.decode(doc) == (
        Reading(
            "telemetry",
            1718000000000,
            Position(52.5, 13.4, None, 30.0, None, 9),
            {"soc_pct": 81, "charging": True},
        ),
    )


def test_a_mapping_picks_fields_by_path_and_an_array_is_many_readings() -> None:
    fields = JsonFields(
        ts="time", lat="gps.la", lon="gps.lo", kind=None, metrics_object=None,
        metrics=(("soc_pct", "bat.soc"), ("pack_voltage_v", "bat.v")),
    )  # fmt: skip
    codec = JsonCodec(CodecOptions(), fields, "acme")
    doc = (
        b'[{"time": "2024-06-10T06:13:20.5+00:00", "gps": {"la": 1.5, "lo": 2.5},'
        b' "bat": {"soc": 50, "v": 398.2}}, {"time": 1718000000123}]'
    )
    first, second = codec.decode(doc)
    assert first == Reading(
        "telemetry", 1718000000500, Position(1.5, 2.5), {"soc_pct": 50, "pack_voltage_v": 398.2}
    )
    assert (second.ts_ms, second.position, second.metrics) == (1718000000123, None, {})
    assert codec.name == "acme"


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        (b"{not json", "bad_json"),
        (b"[]", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (b'{"lat": "north", "lon": 1}', "bad_field"),
        (b'{"lat": 91, "lon": 1}', "bad_field"),
        (b'{"ts": "yesterday"}', "bad_field"),
        (b'{"ts": "2024-06-10T06:13:20"}', "bad_field"),  # no zone: ambiguous
        (b'{"kind": "party"}', "bad_field"),
    ],
)
def test_bad_documents_are_kept_raw_with_a_decode_error(doc: bytes, code: str) -> None:
    frame = message_frame(JsonCodec(CodecOptions()), DEVICE, doc)
    assert isinstance(frame, Frame)
    assert (frame.device_id, frame.payload, frame.readings, frame.error_code) == (
        DEVICE, doc, (), code)  # fmt: skip


def test_a_message_is_one_bounded_frame_however_it_is_fed() -> None:
    codec = JsonCodec(CodecOptions(max_frame_bytes=64))
    doc = b'{"ts": 1718000000, "metrics": {"soc_pct": 81}}'
    session = codec.session()
    for i in range(len(doc)):
        assert session.feed(doc[i : i + 1]) == []
    assert session.buffered_bytes == len(doc)
    (event,) = session.eof()
    assert isinstance(event, Frame) and event.readings == codec.decode(doc)
    assert codec.session().eof() == []
    oversize = message_frame(codec, DEVICE, b"[" + b"{}," * 40 + b"{}]")
    assert isinstance(oversize, Reject) and oversize.reason == "not_one_frame"
