"""The ``json`` codec: a document per message, fields found by a mapping; pure decode."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parser.codec import CodecOptions
from parser.errors import DecodeError
from parser.events import Frame, Reject
from parser.json_codec import JsonCodec, JsonFields
from parser.messages import message_frame
from parser.records import KINDS, RAW_SCHEMA, Position, RawRecord, Reading, parsed_records, to_json

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
        (b'{"lat": 1' + b"0" * 400 + b', "lon": 1}', "bad_field"),  # no float holds it
        (b'{"ts": 1e20}', "bad_field"),  # past 9999: iso_ms cannot write it
        (b'{"ts": -1e308}', "bad_field"),  # -inf ms
        (b'{"ts": -1' + b"0" * 400 + b"}", "bad_field"),
        (b'{"ts": -1}', "bad_field"),  # before the epoch
        (b'{"ts": "9999-12-31T23:59:59-01:00"}', "bad_field"),  # year 10000 in UTC
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


# Numbers at and beyond what a float, an int or a timestamp can hold, and any JSON value.
NUMBERS = (
    st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([10**400, -(10**400), 2**64, 1e20, 1e308, -1e308, 5e-324])
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
TIMES = NUMBERS | st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat())
# Each field absent, plausible or anything: a document whose every field is wrong is refused at
# the first, which would leave the later ones untried.
DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "ts": TIMES | JSON_VALUES,
        "kind": st.sampled_from(KINDS) | JSON_VALUES,
        **{f: NUMBERS | JSON_VALUES for f in ("lat", "lon", "alt_m", "speed_kmh", "heading_deg")},
        "satellites": NUMBERS | JSON_VALUES,
        "metrics": st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3) | JSON_VALUES,
        "soc": JSON_VALUES,
    },
)
# The same documents one level down, found by dotted paths, with a metric picked by path.
NESTED = JsonFields(
    **{f: f"d.{f}" for f in ("ts", "kind", "lat", "lon", "alt_m", "speed_kmh", "heading_deg")},
    satellites="d.satellites", metrics_object="d.metrics", metrics=(("soc_pct", "d.soc"),),
)  # fmt: skip


@given(st.booleans(), DOCUMENTS | st.lists(DOCUMENTS, max_size=3))
def test_decode_refuses_with_its_own_error_or_gives_readings_the_records_can_carry(
    nested: bool, document: object
) -> None:
    codec = JsonCodec(CodecOptions(), NESTED if nested else None)
    if nested:
        document = [{"d": d} for d in document] if isinstance(document, list) else {"d": document}
    try:
        readings = codec.decode(msgspec.json.encode(document))
    except DecodeError:
        return
    raw = RawRecord(RAW_SCHEMA, "r1", DEVICE, "json", "mqtt", None, "t", b"")
    for record in parsed_records(raw, readings):  # iso_ms writes each ts
        assert msgspec.json.decode(to_json(record))["ts"] == record.ts
