"""EVB1 through the layout engine, against vectors built from codecs/evb1.md."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parser.codec import Codec, CodecOptions
from parser.events import Action, Event, Frame, Login, Reject
from parser.records import RAW_SCHEMA, ParsedRecord, RawRecord, parsed_records, to_json
from tests.parser.streams import (
    feed_bytewise,
    feed_three_ways,
    feed_whole,
    layout_codec,
    load_vectors,
)

CASES = load_vectors("evb1")
ACCEPTED = [c for c in CASES if c["expect"]["event"] != "reject"]
REJECTED = [c for c in CASES if c["expect"]["event"] == "reject"]
LOGIN = bytes.fromhex(CASES[0]["hex"])


@pytest.fixture(scope="module")
def codec() -> Codec:
    return layout_codec("evb1")


def to_json_lines(items: list[ParsedRecord]) -> bytes:
    return b"[" + b",".join(to_json(r) for r in items) + b"]"


def records(event: Frame) -> list[dict[str, Any]]:
    raw = RawRecord(RAW_SCHEMA, "r1", event.device_id, "evb1", "tcp", None, "t", event.payload)
    out: list[dict[str, Any]] = msgspec.json.decode(
        to_json_lines(parsed_records(raw, event.readings))
    )
    return out


@pytest.mark.parametrize("case", ACCEPTED, ids=[c["name"] for c in ACCEPTED])
def test_accepted_vectors_three_ways(codec: Codec, case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    expect = case["expect"]
    prefix = b"" if expect["event"] == "login" else LOGIN
    events = feed_three_ways(codec, prefix + data, trailing=LOGIN[:9])
    event = events[-1]
    assert event.reply.hex() == expect["reply_hex"]
    if expect["event"] == "login":
        assert isinstance(event, Login)
        assert event.device_id == expect["device_id"]
        assert event.payload == data
        assert event.readings[0].kind == "login"
        assert event.readings[0].attrs == expect["attrs"]
        return
    assert isinstance(event, Frame)
    assert event.device_id == "356307042441013"
    assert event.payload == data
    assert event.error_code == expect.get("error")
    got = records(event)
    assert len(got) == len(expect["records"])
    for record, want in zip(got, expect["records"], strict=True):
        assert {k: record[k] for k in want} == want
        assert record["io"] == {}


@pytest.mark.parametrize("case", REJECTED, ids=[c["name"] for c in REJECTED])
def test_rejected_vectors(codec: Codec, case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["hex"])
    session = codec.session()
    events = session.feed(data)
    assert events, "a bad candidate is rejected as soon as its bytes decide it"
    first = events[0]
    assert isinstance(first, Reject)
    assert first.reason == case["expect"]["reason"]
    assert first.action is Action.RESYNC
    assert first.reply == b""
    assert not any(isinstance(e, Frame) for e in events)
    # Whatever follows is hunted for the next frame start and never exceeds the frame bound.
    assert session.buffered_bytes <= codec.max_frame_bytes


def test_oversize_decided_on_header_alone(codec: Codec) -> None:
    session = codec.session()
    events = session.feed(b"EV\x01\x02\x00\x01\xff\xff")
    assert [e.reason for e in events if isinstance(e, Reject)] == ["oversize"]
    assert session.buffered_bytes < 8


def test_bad_crc_then_resync_reports_each_candidate_and_run(codec: Codec) -> None:
    good = bytes.fromhex(CASES[3]["hex"])  # fault frame
    bad = bytearray(good)
    bad[-1] ^= 1
    data = LOGIN + b"\x00junk" + bytes(bad) + good
    events = feed_whole(codec, data)
    assert feed_bytewise(codec, data) == events
    kinds = [
        (type(e).__name__, getattr(e, "reason", None), getattr(e, "skipped_bytes", 0))
        for e in events
    ]
    assert kinds == [
        ("Login", None, 0),
        ("Reject", "garbage", 5),
        ("Reject", "crc_mismatch", 1),
        ("Reject", "garbage", len(good) - 1),
        ("Frame", None, 0),
    ]


def test_eof_reports_trailing_garbage_and_truncated_frames(codec: Codec) -> None:
    session = codec.session()
    assert session.feed(b"xyzE") == []
    assert session.buffered_bytes == 1  # "E" may start a frame
    (event,) = session.eof()
    assert isinstance(event, Reject) and (event.reason, event.skipped_bytes) == ("garbage", 4)
    session = codec.session()
    session.feed(LOGIN[:10])
    (event,) = session.eof()
    assert isinstance(event, Reject) and (event.reason, event.action) == ("truncated", Action.CLOSE)


def test_no_login_means_no_device_id(codec: Codec) -> None:
    (event,) = codec.session().feed(bytes.fromhex(CASES[1]["hex"]))
    assert isinstance(event, Frame) and event.device_id is None


def test_allow_list_refuses_other_devices() -> None:
    codec = layout_codec("evb1", CodecOptions(allowed_devices=frozenset({"1"})))
    (event,) = codec.session().feed(LOGIN)
    assert isinstance(event, Reject) and event.action is Action.CLOSE


def test_decode_is_pure_and_matches_the_session(codec: Codec) -> None:
    data = bytes.fromhex(CASES[1]["hex"])
    (event,) = codec.session().feed(data)
    assert isinstance(event, Frame)
    assert codec.decode(data) == event.readings == codec.decode(data)


VALID_STREAM = b"".join(bytes.fromhex(c["hex"]) for c in ACCEPTED)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(1, 200), max_size=40))
def test_fuzz_random_bytes_never_raise_and_stay_bounded(
    codec: Codec, data: bytes, cuts: list[int]
) -> None:
    check_bounded(codec, data, cuts)


@settings(max_examples=300, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(VALID_STREAM) - 1), st.integers(0, 255)), max_size=8
    ),
    cuts=st.lists(st.integers(1, 64), max_size=40),
)
def test_fuzz_mutated_frames(codec: Codec, edits: list[tuple[int, int]], cuts: list[int]) -> None:
    data = bytearray(VALID_STREAM)
    for at, value in edits:
        data[at] = value
    check_bounded(codec, bytes(data), cuts)


@settings(max_examples=200, deadline=None)
@given(noise=st.binary(max_size=300), cuts=st.lists(st.integers(1, 50), max_size=30))
def test_valid_frame_after_garbage_is_found(codec: Codec, noise: bytes, cuts: list[int]) -> None:
    noise = noise.replace(b"EV\x01", b"")
    good = bytes.fromhex(CASES[1]["hex"])
    events = check_bounded(codec, noise + good, cuts)
    assert events == feed_whole(codec, noise + good)
    assert isinstance(events[-1], Frame) and events[-1].payload == good


def check_bounded(codec: Codec, data: bytes, cuts: list[int]) -> list[Event]:
    """Feed ``data`` in the given chunk sizes; assert the session invariant; return the events."""
    session = codec.session()
    events: list[Event] = []
    at = 0
    for size in [*cuts, len(data)]:
        events += session.feed(data[at : at + size])
        at += size
        assert session.buffered_bytes <= codec.max_frame_bytes
    assert all(isinstance(e, Login | Frame | Reject) for e in events)
    return events
