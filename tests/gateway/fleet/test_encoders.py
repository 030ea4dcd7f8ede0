"""Frames the simulator makes, decoded by the gateway's own codecs, give back the model state."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from gateway.fleet import encoders as enc
from gateway.fleet.model import CELLS, Fault, FaultKind, Severity, Subsystem, Vehicle, VehicleState
from gateway.fleet.replies import Evb1AckReader, Gt06ReplyReader, TeltonikaAckReader
from gateway.pipeline.registry import CodecRegistry
from parser.codec import Codec
from parser.events import Event, Frame, Login
from parser.records import Reading
from tests.gateway.fleet.states import IMEI, STATES, T0

REGISTRY = CodecRegistry.load()


def codec(name: str) -> Codec:
    return REGISTRY.create(name)


def feed(name: str, data: bytes) -> list[Event]:
    """Bytes through a fresh session: whole, and byte by byte with the same events."""
    whole = codec(name).session().feed(data)
    session = codec(name).session()
    bytewise = [e for i in range(len(data)) for e in session.feed(data[i : i + 1])]
    assert bytewise == whole
    return whole


def frames(events: list[Event]) -> list[Frame]:
    assert all(isinstance(e, Login | Frame) for e in events), events
    out = [e for e in events if isinstance(e, Frame)]
    assert all(f.error_code is None and f.device_id == IMEI for f in out), out
    return out


def test_the_sample_states_cover_every_regime() -> None:
    assert any(s.charging and s.fast_charge for s in STATES)
    assert any(s.charging and not s.fast_charge for s in STATES)
    assert any(s.regen for s in STATES)
    assert any(not s.gps_valid for s in STATES)
    assert any(s.speed_kmh > 40 for s in STATES)
    assert any(s.cell_t_max_c >= 60 for s in STATES)


def check_position(reading: Reading, state: VehicleState) -> None:
    assert reading.position is not None
    assert reading.position.lat == pytest.approx(state.lat, abs=1e-6)
    assert reading.position.lon == pytest.approx(state.lon, abs=1e-6)
    assert reading.position.valid == state.gps_valid


# --- EVB1 ---


def test_evb1_login_is_acked_and_names_the_device() -> None:
    (login,) = feed("evb1", enc.evb1_login(0xBEEF, IMEI))
    assert isinstance(login, Login)
    assert login.device_id == IMEI
    assert login.readings[0].attrs == {"firmware": "1.4"}
    assert Evb1AckReader().feed(login.reply) == [(0xBEEF, enc.Evb1Type.LOGIN)]


@pytest.mark.parametrize("index", range(0, len(STATES), 97))
def test_evb1_telemetry_decodes_to_the_state(index: int) -> None:
    state = STATES[index]
    frame = enc.evb1_telemetry(index, state.ts, enc.evb1_telemetry_tail(state))
    (event,) = frames(feed("evb1", enc.evb1_login(65535, IMEI) + frame)[1:])
    assert event.payload == frame
    assert Evb1AckReader().feed(event.reply) == [(index, enc.Evb1Type.TELEMETRY)]
    (reading,) = event.readings
    assert reading.kind == "telemetry"
    assert reading.ts_ms == int(state.ts) * 1000
    check_position(reading, state)
    m = reading.metrics
    assert m["speed_kmh"] == pytest.approx(state.speed_kmh, abs=0.05)
    assert m["soc_pct"] == pytest.approx(state.soc_pct, abs=0.05)
    assert m["soh_pct"] == state.soh_pct
    assert m["pack_voltage_v"] == pytest.approx(state.pack_voltage_v, abs=0.05)
    assert m["pack_current_a"] == pytest.approx(state.pack_current_a, abs=0.05)
    assert m["cell_voltage_min_v"] == pytest.approx(state.cell_v_min_mv / 1000)
    assert m["cell_voltage_max_v"] == pytest.approx(state.cell_v_max_mv / 1000)
    assert m["cell_temp_min_c"] == round(state.cell_t_min_c)
    assert m["cell_temp_max_c"] == round(state.cell_t_max_c)
    assert m["motor_rpm"] == state.motor_rpm
    assert m["motor_temp_c"] == round(state.motor_temp_c)
    assert m["odometer_km"] == pytest.approx(state.odometer_km, abs=0.05)
    for flag in ("ignition", "charging", "regen", "fast_charge"):
        assert m[flag] is getattr(state, flag)
    assert m["gps_valid"] is state.gps_valid


def test_evb1_fault_heartbeat_and_cells() -> None:
    fault = Fault(FaultKind.BATTERY_OVERTEMP, T0, 0x0101, Severity.CRITICAL, Subsystem.THERMAL, 63)
    vehicle = Vehicle(random.Random(3), T0)
    cells = vehicle.cell_voltages_mv()
    data = (
        enc.evb1_login(1, IMEI)
        + enc.evb1_fault(2, fault)
        + enc.evb1_heartbeat(3, T0 + 30, -71, 1234.5)
        + enc.evb1_cells(4, T0 + 60, cells)
    )
    alarm, heartbeat, cell_frame = frames(feed("evb1", data)[1:])
    acks = Evb1AckReader().feed(alarm.reply + heartbeat.reply + cell_frame.reply)
    assert acks == [(2, 0x03), (3, 0x04), (4, 0x05)]
    (reading,) = alarm.readings
    assert reading.kind == "alarm"
    assert reading.ts_ms == int(T0) * 1000
    assert [(a.code, a.severity, a.subsystem, a.value) for a in reading.alarms] == [
        ("EVB1-0x0101", "critical", "thermal", 63)
    ]
    assert heartbeat.readings[0].metrics == {"rssi_dbm": -71, "uptime_s": 1234}
    assert len(cells) == CELLS
    assert cell_frame.readings[0].metrics["cell_voltages_v"] == pytest.approx(
        [mv / 1000 for mv in cells]
    )


# --- Teltonika ---


def test_teltonika_login_reply_is_read() -> None:
    (login,) = feed("teltonika", enc.teltonika_login(IMEI))
    assert isinstance(login, Login) and login.device_id == IMEI
    assert TeltonikaAckReader().feed(login.reply) == (True, [])
    assert TeltonikaAckReader().feed(b"\x00") == (False, [])


@pytest.mark.parametrize("count", [1, 3, 20])
def test_teltonika_packet_decodes_to_the_states(count: int) -> None:
    states = STATES[count * 11 : count * 11 + count]
    records = [enc.teltonika_record(s.ts, 0, enc.teltonika_record_tail(s)) for s in states]
    packet = enc.teltonika_packet(records)
    (event,) = frames(feed("teltonika", enc.teltonika_login(IMEI) + packet)[1:])
    assert event.payload == packet
    reader = TeltonikaAckReader()
    reader.feed(b"\x01")
    assert reader.feed(event.reply) == (None, [count])
    assert len(event.readings) == count
    for reading, state in zip(event.readings, states, strict=True):
        assert reading.kind == "telemetry"
        assert reading.ts_ms == int(state.ts * 1000)
        check_position(reading, replace(state, gps_valid=state.satellites > 0))
        m = reading.metrics
        assert m["speed_kmh"] == round(state.speed_kmh)
        assert m["battery_level_pct"] == round(state.soc_pct)
        assert m["odometer_km"] == pytest.approx(state.odometer_km, abs=0.001)
        assert m["ignition"] is state.ignition
        assert m["external_voltage_v"] == pytest.approx(state.aux_voltage_v)
        assert reading.io["72"] == round(state.cell_t_max_c * 10)
        assert reading.position is not None
        assert reading.position.heading_deg == state.heading_deg


def test_teltonika_fault_record_is_a_panic_alarm() -> None:
    state = STATES[5]
    tail = enc.teltonika_record_tail(state, enc.FAULT_EVENT_IO[FaultKind.BATTERY_OVERTEMP])
    packet = enc.teltonika_packet([enc.teltonika_record(state.ts, enc.PRIORITY_PANIC, tail)])
    (event,) = frames(feed("teltonika", enc.teltonika_login(IMEI) + packet)[1:])
    (reading,) = event.readings
    assert reading.kind == "alarm"
    assert [(a.code, a.severity) for a in reading.alarms] == [("teltonika_panic", "critical")]
    assert reading.attrs["event_io_id"] == enc.IO_TEMPERATURE


def test_teltonika_keepalive_is_skipped_by_the_gateway() -> None:
    state = STATES[9]
    packet = enc.teltonika_packet(
        [enc.teltonika_record(state.ts, 0, enc.teltonika_record_tail(state))]
    )
    data = enc.teltonika_login(IMEI) + enc.TELTONIKA_KEEPALIVE + packet + enc.TELTONIKA_KEEPALIVE
    assert len(frames(feed("teltonika", data)[1:])) == 1


# --- GT06 ---


def test_gt06_login_reply_is_matched_by_serial() -> None:
    (login,) = feed("gt06", enc.gt06_login(IMEI, 0x0102))
    assert isinstance(login, Login) and login.device_id == IMEI
    assert Gt06ReplyReader().feed(login.reply) == [(enc.Gt06Protocol.LOGIN, 0x0102)]


@pytest.mark.parametrize("index", range(3, len(STATES), 131))
def test_gt06_location_decodes_to_the_state(index: int) -> None:
    state = STATES[index]
    frame = enc.gt06_location(state.ts, enc.gt06_tail(state), index)
    (event,) = frames(feed("gt06", enc.gt06_login(IMEI, 1) + frame)[1:])
    assert event.payload == frame
    assert event.reply == b""  # the doc defines no reply to a location
    (reading,) = event.readings
    assert reading.ts_ms == int(state.ts) * 1000
    check_position(reading, state)
    assert reading.position is not None
    assert reading.position.speed_kmh == round(state.speed_kmh)
    assert reading.position.heading_deg == state.heading_deg
    assert reading.position.satellites == state.satellites


def test_gt06_status_and_alarm_are_replied() -> None:
    state = next(s for s in STATES if s.charging)
    overtemp = Fault(
        FaultKind.BATTERY_OVERTEMP, state.ts, 0x0101, Severity.CRITICAL, Subsystem.THERMAL, 64
    )
    isolation = Fault(FaultKind.ISOLATION, state.ts, 0x0102, Severity.CRITICAL, Subsystem.BMS, 40)
    data = (
        enc.gt06_login(IMEI, 1)
        + enc.gt06_status(state, 2)
        + enc.gt06_alarm(state, overtemp, 3)
        + enc.gt06_alarm(state, isolation, 4)
    )
    status, alarm1, alarm2 = frames(feed("gt06", data)[1:])
    replies = Gt06ReplyReader().feed(status.reply + alarm1.reply + alarm2.reply)
    assert replies == [(0x13, 2), (0x16, 3), (0x16, 4)]
    heartbeat = status.readings[0]
    assert heartbeat.kind == "heartbeat"
    assert heartbeat.metrics["charging"] is True
    assert heartbeat.metrics["ignition"] is False
    assert heartbeat.metrics["voltage_level"] == round(state.soc_pct * 6 / 100)
    assert [a.code for a in alarm1.readings[0].alarms] == ["sos"]
    assert [a.code for a in alarm2.readings[0].alarms] == ["power_cut"]
    check_position(alarm1.readings[0], state)


@pytest.mark.parametrize("index", range(5, len(STATES), 131))
def test_gt06_location_0x22_decodes_to_the_state(index: int) -> None:
    state = STATES[index]
    frame = enc.gt06_location(state.ts, enc.gt06_tail_2(state), index, 0x22)
    (event,) = frames(feed("gt06", enc.gt06_login(IMEI, 1) + frame)[1:])
    assert event.reply == b""  # no reply to a location (JM-VL01 sheet)
    (reading,) = event.readings
    assert reading.ts_ms == int(state.ts) * 1000
    check_position(reading, state)
    assert reading.metrics["ignition"] is state.ignition
    assert reading.metrics["odometer_m"] == round(state.odometer_km * 1000)
    assert (reading.attrs["mcc"], reading.attrs["upload_mode"]) == (404, 0)
    assert "extra" not in reading.attrs


# --- AIS-140 ---


def test_ais140_login_then_tracking_decode_to_the_state() -> None:
    state = next(s for s in STATES if s.speed_kmh > 40)
    tail = enc.ais140_tail(state)
    data = enc.ais140_login(IMEI, state) + b"\r\n" + enc.ais140_tracking(IMEI, state.ts, tail, 7)
    login, frame = feed("ais140", data + b"\r\n")
    assert isinstance(login, Login) and login.device_id == IMEI and login.reply == b""
    (event,) = frames([frame])
    assert event.reply == b""
    (reading,) = event.readings
    assert (reading.kind, reading.ts_ms) == ("telemetry", int(state.ts) * 1000)
    check_position(reading, state)
    assert reading.position is not None
    assert reading.position.speed_kmh == pytest.approx(state.speed_kmh, abs=0.05)
    assert reading.metrics["ignition"] is state.ignition
    assert reading.metrics["external_voltage_v"] == pytest.approx(state.aux_voltage_v, abs=0.05)
    assert (reading.attrs["mcc"], reading.attrs["frame_number"]) == (404, 7)


def test_ais140_faults_are_an_emergency_and_a_power_alert_and_health_a_heartbeat() -> None:
    state = STATES[40]
    overtemp = enc.ais140_tracking(
        IMEI, state.ts, enc.ais140_tail(state, emergency=True), 8, ("EA", 10)
    )
    isolation = enc.ais140_tracking(IMEI, state.ts, enc.ais140_tail(state), 9, ("NR", 3))
    health = enc.ais140_health(IMEI, state)
    data = enc.ais140_login(IMEI, None) + overtemp + isolation + health + b"\r\n"
    emergency, power, heartbeat = frames(feed("ais140", data)[1:])
    assert [a.code for a in emergency.readings[0].alarms] == ["emergency"]
    assert emergency.readings[0].metrics["emergency"] is True
    assert [a.severity for a in power.readings[0].alarms] == ["critical"]
    assert heartbeat.readings[0].kind == "heartbeat"
    assert heartbeat.readings[0].metrics["battery_level_pct"] == round(state.soc_pct)


# --- reply readers against hostile bytes ---


def test_reply_readers_skip_garbage_and_bad_crcs_and_wait_for_whole_frames() -> None:
    (login,) = feed("evb1", enc.evb1_login(9, IMEI))
    ack = login.reply
    bad = ack[:-1] + bytes([ack[-1] ^ 1])
    reader = Evb1AckReader()
    stream = b"\x00EVxx" + bad + ack + ack[:4]
    assert reader.feed(stream) == [(9, 1)]
    assert reader.feed(ack[4:]) == [(9, 1)]
    (gt06_login,) = feed("gt06", enc.gt06_login(IMEI, 7))
    reply = gt06_login.reply
    gt06 = Gt06ReplyReader()
    assert gt06.feed(b"\x78junk" + reply[:-1] + b"\x00" + reply + reply[:3]) == [(1, 7)]
    assert gt06.feed(reply[3:]) == [(1, 7)]
    teltonika = TeltonikaAckReader()
    assert teltonika.feed(b"\x01\x00\x00") == (True, [])
    assert teltonika.feed(b"\x00\x05\x00\x00\x00\x02") == (None, [5, 2])
