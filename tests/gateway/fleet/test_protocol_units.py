"""Units driven by a fake clock against the gateway's own codec sessions (bytes only)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from gateway.fleet import encoders as enc
from gateway.fleet.model import Vehicle
from gateway.fleet.protocol_units import UNITS, Gt06Unit
from gateway.fleet.stats import CodecStats
from gateway.fleet.unit import DeviceUnit, UnitSettings
from gateway.pipeline.registry import CodecRegistry
from parser.events import Frame, Login, Reject
from tests.gateway.fleet.states import IMEI, T0

REGISTRY = CodecRegistry.load()
QUIET = {"heartbeat_s": 1e9, "cells_s": 1e9}  # no timers unless a test wants them


class Gateway:
    """One connection of the gateway: our codec session, replies kept or dropped on demand."""

    def __init__(self, codec: str) -> None:
        self.session = REGISTRY.create(codec).session()
        self.frames: list[bytes] = []  # payloads of data frames, in arrival order
        self.acked: list[bytes] = []  # payloads whose reply was delivered

    def take(self, out: list[bytes], *, ack: bool = True) -> bytes:
        replies = b""
        for event in self.session.feed(b"".join(out)):
            assert not isinstance(event, Reject), event
            if isinstance(event, Frame):
                assert event.device_id == IMEI and event.error_code is None
                self.frames.append(event.payload)
            if ack:
                replies += event.reply
                if isinstance(event, Frame) and event.reply:
                    self.acked.append(event.payload)
        return replies


def make_unit(codec: str, faults_per_min: float = 0.0, **settings: Any) -> DeviceUnit:
    stats = CodecStats(codec)
    unit = UNITS[codec](
        IMEI,
        Vehicle(random.Random(1), T0, faults_per_min=faults_per_min),
        stats,
        settings=UnitSettings(**settings),
        rng=random.Random(2),
        epoch_offset_s=T0,
    )
    unit.start(0.0)
    return unit


def log_in(unit: DeviceUnit, gateway: Gateway, now: float = 0.0) -> list[bytes]:
    out = unit.received(gateway.take(unit.connected(now)), now)
    assert unit.logged_in and unit.close_reason is None
    return out


def split_evb1(replies: bytes) -> list[bytes]:
    return [replies[i : i + 11] for i in range(0, len(replies), 11)]


# --- EVB1 ---


def test_evb1_pipelines_a_bounded_window_and_matches_acks_by_seq() -> None:
    unit, gw = make_unit("evb1", window_frames=4, **QUIET), Gateway("evb1")
    assert log_in(unit, gw) == []
    for i in range(10):
        unit.sample(0.1 * i)
    first = unit.pump(1.0)
    assert len(first) == 4 and len(unit.waiting) == 4 and len(unit.flash) == 6
    assert unit.pump(1.0) == [], "the window is full"
    acks = split_evb1(gw.take(first))
    # ACKs in any order free the window by seq.
    refill = unit.received(b"".join(reversed(acks)), 1.2)
    assert len(refill) == 4
    refill += unit.received(gw.take(refill), 1.3)
    assert len(refill) == 6
    unit.received(gw.take(refill[4:]), 1.4)
    stats = unit.stats
    assert (stats.sent, stats.acked, stats.resent, stats.stray_acks) == (10, 10, 0, 0)
    assert unit.idle and gw.frames == first + refill
    assert stats.latency.count == 10


def test_evb1_resends_the_same_bytes_after_the_timeout() -> None:
    unit, gw = make_unit("evb1", ack_timeout_s=10.0, **QUIET), Gateway("evb1")
    log_in(unit, gw)
    unit.sample(0.0)
    (frame,) = unit.pump(0.0)
    gw.take([frame], ack=False)  # the ACK is lost
    assert unit.pump(9.9) == []
    assert unit.pump(10.0) == [frame]
    reply = gw.take([frame])
    unit.received(reply, 10.05)
    unit.received(reply, 10.1)  # a late duplicate
    stats = unit.stats
    assert (stats.sent, stats.acked, stats.resent, stats.stray_acks) == (1, 1, 1, 1)
    assert stats.latency.percentile_ms(0.5) == pytest.approx(10_050, rel=0.01)


def test_evb1_reconnect_resends_unacked_frames_first() -> None:
    unit, gw = make_unit("evb1", **QUIET), Gateway("evb1")
    log_in(unit, gw)
    for i in range(3):
        unit.sample(float(i))
    sent = unit.pump(3.0)
    gw.take(sent, ack=False)
    unit.disconnected()
    unit.sample(4.0)  # recorded while offline
    gw2 = Gateway("evb1")
    out = log_in(unit, gw2, now=5.0)
    assert out[:3] == sent and len(out) == 4
    unit.received(gw2.take(out), 5.1)
    stats = unit.stats
    assert (stats.sent, stats.acked, stats.resent, stats.logins, stats.unacked) == (4, 4, 3, 2, 0)


def test_evb1_login_timeout_closes_and_counts_a_connect_error() -> None:
    unit = make_unit("evb1", ack_timeout_s=2.0)
    (login,) = unit.connected(0.0)
    assert login.startswith(b"EV\x01\x01")
    assert unit.pump(1.9) == [] and unit.close_reason is None
    unit.pump(2.0)
    assert unit.close_reason == "login not answered"
    assert unit.stats.connect_errors == 1


def test_flash_is_bounded_and_counts_what_it_drops_and_holds() -> None:
    unit = make_unit("evb1", flash_frames=5, **QUIET)
    for i in range(8):
        unit.sample(float(i))
    unit.finish()
    assert (unit.stats.dropped, unit.stats.unsent, unit.stats.unacked) == (3, 5, 0)


def test_evb1_fault_jumps_the_queue_and_heartbeats_follow_the_clock() -> None:
    unit, gw = make_unit("evb1", faults_per_min=6000.0, heartbeat_s=30.0), Gateway("evb1")
    for i in range(3):
        unit.sample(float(i))
    assert unit.stats.faults == 1
    out = log_in(unit, gw, now=3.0)
    assert out[0][3] == enc.Evb1Type.FAULT
    assert all(f[3] in (enc.Evb1Type.TELEMETRY, enc.Evb1Type.CELLS) for f in out[1:])
    unit.received(gw.take(out), 3.1)
    beats: list[bytes] = []
    for t in range(4, 70):  # the first beat is 15-30 s after the login, then every 30 s
        out = unit.pump(float(t))
        beats += out
        unit.received(gw.take(out), float(t))
    assert [f[3] for f in beats] == [enc.Evb1Type.HEARTBEAT] * 2
    assert unit.idle


# --- Teltonika ---


def test_teltonika_one_packet_in_flight_and_records_batch_meanwhile() -> None:
    unit, gw = make_unit("teltonika", packet_records=3), Gateway("teltonika")
    log_in(unit, gw)
    unit.sample(0.0)
    (first,) = unit.pump(0.0)
    for i in range(1, 6):
        unit.sample(float(i))
        assert unit.pump(float(i)) == []
    (second,) = unit.received(gw.take([first]), 6.0)
    (third,) = unit.received(gw.take([second]), 6.1)
    unit.received(gw.take([third]), 6.2)
    decoded = [REGISTRY.create("teltonika").decode(p) for p in (first, second, third)]
    assert [len(r) for r in decoded] == [1, 3, 2]
    stats = unit.stats
    assert (stats.sent, stats.acked, stats.records, stats.resent) == (3, 3, 6, 0)
    assert unit.idle


def test_teltonika_resends_on_timeout_and_on_a_wrong_count() -> None:
    unit, gw = make_unit("teltonika", ack_timeout_s=5.0), Gateway("teltonika")
    log_in(unit, gw)
    unit.sample(0.0)
    (packet,) = unit.pump(0.0)
    assert unit.pump(5.0) == [packet]
    assert unit.received(b"\x00\x00\x00\x07", 5.5) == [packet]
    unit.received(gw.take([packet]), 5.6)
    assert (unit.stats.resent, unit.stats.acked, unit.stats.unacked) == (2, 1, 0)


def test_teltonika_refused_login_closes() -> None:
    unit = make_unit("teltonika")
    assert unit.connected(0.0) == [b"\x00\x0f" + IMEI.encode()]
    assert unit.received(b"\x00", 0.1) == []
    assert unit.close_reason == "login refused (00)" and not unit.logged_in
    assert (unit.stats.login_refused, unit.stats.connect_errors) == (1, 1)


def test_teltonika_keeps_an_idle_link_alive_with_0xff() -> None:
    unit, gw = make_unit("teltonika", keepalive_s=30.0), Gateway("teltonika")
    log_in(unit, gw)
    assert unit.pump(29.0) == []
    assert unit.pump(30.0) == [b"\xff"]
    assert unit.pump(31.0) == []
    assert gw.take([b"\xff"]) == b""


# --- GT06 ---


def test_gt06_locations_need_no_reply_heartbeats_do() -> None:
    unit, gw = make_unit("gt06", heartbeat_s=30.0), Gateway("gt06")
    out = log_in(unit, gw)
    assert [f[3] for f in out] == [enc.Gt06Protocol.STATUS], "status right after login"
    for i in range(5):
        unit.sample(float(i))
        out += unit.pump(float(i))
    assert unit.received(gw.take(out), 5.0) == []
    stats = unit.stats
    assert (stats.sent, stats.no_ack, stats.acked, stats.unacked) == (6, 5, 1, 0)
    assert unit.idle


def test_gt06_reconnects_after_missed_heartbeat_replies() -> None:
    unit, gw = make_unit("gt06", heartbeat_s=1.0, ack_timeout_s=1.0), Gateway("gt06")
    log_in(unit, gw)
    for t in range(5):
        gw.take(unit.pump(float(t)), ack=False)
        if unit.close_reason:
            break
    assert unit.close_reason == "3 heartbeat replies missing"
    assert unit.stats.resent >= 1


# --- every protocol under lost ACKs and dropped connections ---


# AIS-140 defines no reply: nothing is awaited or resent (see the AIS-140 tests below).
@pytest.mark.parametrize("codec", sorted(set(UNITS) - {"ais140"}))
def test_nothing_is_lost_under_lost_acks_and_reconnects(codec: str) -> None:
    acked: list[bytes] = []
    sent: list[bytes] = []
    unit = make_unit(codec, faults_per_min=2.0, ack_timeout_s=3.0, heartbeat_s=5.0)
    unit.stats.on_sent = lambda _codec, _device, payload: sent.append(payload)
    unit.stats.on_acked = lambda _codec, _device, payload: acked.append(payload)
    rng = random.Random(codec)
    gateways = [Gateway(codec)]
    out = unit.connected(0.0)
    t = 0.0
    for step in range(1200):
        t = step * 0.25
        lossy = step < 1000
        if lossy and rng.random() < 0.01:
            unit.disconnected()
            gateways.append(Gateway(codec))
            out = unit.connected(t)
        if step % 2 == 0 and lossy:
            unit.sample(t)
        replies = gateways[-1].take(out, ack=not lossy or rng.random() < 0.7)
        out = unit.received(replies, t) + unit.pump(t)
        if unit.close_reason:
            unit.disconnected()
            gateways.append(Gateway(codec))
            out = unit.connected(t)
    unit.producing = False
    assert unit.idle, "with reliable ACKs everything is eventually ACKed"
    stats = unit.stats
    unit.finish()
    assert stats.unacked == stats.unsent == 0
    assert stats.resent > 0 and len(gateways) > 3
    assert len(sent) == stats.sent and len(acked) == stats.acked
    assert len(set(sent)) == len(sent), "first sends are distinct frames"
    assert stats.acked + stats.no_ack == stats.sent
    delivered = {p for g in gateways for p in g.acked}
    assert set(acked) <= delivered, "an ACKed frame was ACKed by the gateway"
    received = {p for g in gateways for p in g.frames}
    # A GT06 location lost with its connection is gone: the protocol does not acknowledge it.
    locations = {enc.Gt06Protocol.LOCATION, enc.Gt06Protocol.LOCATION_2}
    must_arrive = {p for p in sent if not (codec == "gt06" and p[3] in locations)}
    assert must_arrive <= received, "every frame that expects an ACK reached the gateway"


def test_a_login_event_is_what_every_unit_writes_first() -> None:
    for codec in sorted(UNITS):
        (login,) = make_unit(codec).connected(0.0)
        (event,) = REGISTRY.create(codec).session().feed(login)
        assert isinstance(event, Login) and event.device_id == IMEI


# --- AIS-140 ---


def test_ais140_logs_in_without_an_answer_and_awaits_nothing() -> None:
    unit, gw = make_unit("ais140", heartbeat_s=2.0, faults_per_min=30.0), Gateway("ais140")
    out = unit.connected(0.0)
    assert unit.logged_in
    for step in range(40):
        unit.sample(step * 0.5)
        out += unit.pump(step * 0.5)
    assert gw.take(out) == b""  # every packet goes out with its CR LF
    assert all(o.endswith(b"\r\n") for o in out)
    stats = unit.stats
    assert stats.sent == stats.no_ack == len(gw.frames) > 40
    assert (stats.acked, stats.resent) == (0, 0)
    assert unit.idle
    kinds = {gw_frame.split(b",")[3] for gw_frame in gw.frames if gw_frame.startswith(b"$NRM")}
    assert b"NR" in kinds
    assert any(f.startswith(b"$HP,") for f in gw.frames), "health packets as the heartbeat"


def test_gt06_units_with_an_odd_imei_send_0x22_locations() -> None:
    newer = make_unit("gt06")  # IMEI 356307042441013
    assert isinstance(newer, Gt06Unit)
    assert newer.location == enc.Gt06Protocol.LOCATION_2
    older = UNITS["gt06"](
        IMEI[:-1] + "2",
        Vehicle(random.Random(1), T0),
        CodecStats("gt06"),
        settings=UnitSettings(),
        rng=random.Random(2),
        epoch_offset_s=T0,
    )
    assert isinstance(older, Gt06Unit)
    assert older.location == enc.Gt06Protocol.LOCATION
