"""Raw record ids are content digests: a frame a device resends (it got no ACK, often on a new
connection) gets the same raw, parsed and notification ids as its first copy; any other frame,
device or codec gets other ids."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from parser.events import Frame, Login
from parser.records import RAW_SCHEMA, RawRecord, iso_ms, raw_record_id
from parser.rules import NotificationEngine, Rule, evaluate_frame
from tests.parser.streams import evb1_heartbeat, evb1_login, layout_codec, load_vectors

IMEI = "356307042441013"
T0_MS = 1_767_225_600_000
VECTORS = {c["name"]: bytes.fromhex(c["hex"]) for c in load_vectors("evb1")}
# A telemetry frame raises this rule's notification, a fault frame its protocol alarm's.
LOW_SOC = Rule("low_soc", "soc_pct", "<", 101.0, "warning")

TRIPLES = st.tuples(st.none() | st.text(max_size=8), st.text(max_size=8), st.binary(max_size=8))


def test_the_same_device_codec_and_bytes_get_the_same_id() -> None:
    first = raw_record_id(IMEI, "evb1", evb1_heartbeat(7))
    assert first == raw_record_id(IMEI, "evb1", evb1_heartbeat(7))
    assert re.fullmatch(r"[0-9a-f]{32}", first)


def test_a_frame_before_login_hashes_an_empty_device_id() -> None:
    assert raw_record_id(None, "json", b"{}") == raw_record_id("", "json", b"{}")


def test_each_of_device_codec_and_bytes_changes_the_id() -> None:
    ids = {
        raw_record_id(IMEI, "evb1", evb1_heartbeat(7)),
        raw_record_id("356307042441014", "evb1", evb1_heartbeat(7)),
        raw_record_id(IMEI, "evb1_v2", evb1_heartbeat(7)),
        raw_record_id(IMEI, "evb1", evb1_heartbeat(8)),  # the next sequence number
        raw_record_id(IMEI, "evb1", evb1_heartbeat(7, ts=1767225601)),  # a second later
    }
    assert len(ids) == 5


def test_moving_bytes_between_the_fields_changes_the_id() -> None:
    # The same concatenation cut in different places: the fields are length-prefixed.
    cuts = [("ab", "c", b"d"), ("a", "bc", b"d"), ("a", "b", b"cd"), ("abc", "", b"d")]
    assert len({raw_record_id(device, codec, payload) for codec, device, payload in cuts}) == 4


@given(TRIPLES, TRIPLES)
def test_different_triples_get_different_ids(
    a: tuple[str | None, str, bytes], b: tuple[str | None, str, bytes]
) -> None:
    same = (a[0] or "", *a[1:]) == (b[0] or "", *b[1:])
    assert (raw_record_id(*a) == raw_record_id(*b)) == same


def test_a_resent_frame_keeps_its_parsed_and_notification_ids() -> None:
    codec = layout_codec("evb1")
    frames = [VECTORS["evb1_telemetry_bengaluru"], VECTORS["evb1_fault_bms_critical"]]
    copies = []
    # The first copies, then the resends on a new connection from another port, later; each
    # meets a fresh rule engine (a restarted gateway, another worker, a replay).
    for peer, received_ms in (("10.0.0.7:40001", T0_MS), ("10.0.0.7:40002", T0_MS + 10_000)):
        engine = NotificationEngine([LOW_SOC], reminder_s=None, rate_per_s=100.0, burst=100)
        session = codec.session()
        [login, *events] = session.feed(evb1_login(IMEI) + b"".join(frames))
        assert isinstance(login, Login)
        ids = []
        for event in events:
            assert isinstance(event, Frame) and event.device_id == IMEI
            raw = RawRecord(
                RAW_SCHEMA,
                raw_record_id(event.device_id, codec.name, event.payload),
                event.device_id,
                codec.name,
                "tcp",
                peer,
                iso_ms(received_ms),
                event.payload,
            )
            parsed, notes = evaluate_frame(engine, raw, event.readings, 0.0, received_ms)
            assert parsed and notes
            ids.append((raw.id, [p.id for p in parsed], [n.id for n in notes]))
        copies.append(ids)
    first, resent = copies
    assert len(first) == 2 and first[0][0] != first[1][0]
    assert resent == first
