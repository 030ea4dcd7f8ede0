"""Device-side frame encoders for EVB1, Teltonika Codec 8, GT06 and AIS-140. Pure.

Each protocol has a *tail* function that encodes everything a frame takes from one
:class:`VehicleState` except the fields that change from frame to frame (timestamp, sequence or
serial number). The unit computes the tail once per model step (1 Hz) and the per-frame encoder
only packs a short header in front of it and appends the CRC: at 20 Hz a frame costs a
``struct.pack``, a concatenation and a C-speed CRC.
"""

from __future__ import annotations

import enum
import struct
import time
from collections.abc import Sequence

from gateway.fleet.model import Fault, FaultKind, VehicleState
from parser.crc import crc16_arc, crc16_ccitt_false, crc16_x25

_U16 = struct.Struct(">H")

# --- EVB1 (codecs/evb1.md) ---------------------------------------------------------

EVB1_MAGIC = b"EV"
EVB1_VERSION = 1
EVB1_FIRMWARE = (1, 4)


class Evb1Type(enum.IntEnum):
    LOGIN = 0x01
    TELEMETRY = 0x02
    FAULT = 0x03
    HEARTBEAT = 0x04
    CELLS = 0x05
    ACK = 0x80


_EVB1_HEADER = struct.Struct(">2sBBHH")
# TELEMETRY after its ts: lat, lon, speed, heading, soc, soh, pack V, pack A, cell V min/max,
# cell T min/max, motor rpm, motor T, odometer, flags (38-byte body with the ts).
_EVB1_TELEMETRY_TAIL = struct.Struct(">iiHHHBHhHHbbhbIH")
_EVB1_TELEMETRY_HEAD = struct.Struct(">2sBBHHI")  # header + ts
_EVB1_TELEMETRY_BODY = 4 + _EVB1_TELEMETRY_TAIL.size
_EVB1_FAULT = struct.Struct(">IHBBi")
_EVB1_HEARTBEAT = struct.Struct(">IbI")
_EVB1_MAX_CELLS = 255

# EVB1 flag bits of the TELEMETRY frame.
IGNITION, CHARGING, REGEN, GPS_VALID, FAST_CHARGE = (1 << bit for bit in range(5))


def _clamp(value: float, low: int, high: int) -> int:
    return max(low, min(high, round(value)))


def evb1_frame(type_id: int, seq: int, body: bytes) -> bytes:
    """A whole EVB1 frame: header, body and CRC-16/CCITT-FALSE over version .. end of body."""
    frame = _EVB1_HEADER.pack(EVB1_MAGIC, EVB1_VERSION, type_id, seq, len(body)) + body
    return frame + _U16.pack(crc16_ccitt_false(memoryview(frame)[2:]))


def evb1_login(seq: int, imei: str, firmware: tuple[int, int] = EVB1_FIRMWARE) -> bytes:
    return evb1_frame(Evb1Type.LOGIN, seq, imei.encode("ascii") + bytes(firmware))


def evb1_telemetry_tail(state: VehicleState) -> bytes:
    """The TELEMETRY body after its timestamp."""
    flags = (
        (IGNITION if state.ignition else 0)
        | (CHARGING if state.charging else 0)
        | (REGEN if state.regen else 0)
        | (GPS_VALID if state.gps_valid else 0)
        | (FAST_CHARGE if state.fast_charge else 0)
    )
    return _EVB1_TELEMETRY_TAIL.pack(
        round(state.lat * 1e7),
        round(state.lon * 1e7),
        _clamp(state.speed_kmh * 10, 0, 0xFFFF),
        state.heading_deg,
        _clamp(state.soc_pct * 10, 0, 1000),
        state.soh_pct,
        _clamp(state.pack_voltage_v * 10, 0, 0xFFFF),
        _clamp(state.pack_current_a * 10, -0x8000, 0x7FFF),
        state.cell_v_min_mv,
        state.cell_v_max_mv,
        _clamp(state.cell_t_min_c, -128, 127),
        _clamp(state.cell_t_max_c, -128, 127),
        _clamp(state.motor_rpm, -0x8000, 0x7FFF),
        _clamp(state.motor_temp_c, -128, 127),
        _clamp(state.odometer_km * 10, 0, 0xFFFFFFFF),
        flags,
    )


def evb1_telemetry(seq: int, ts: float, tail: bytes) -> bytes:
    """A TELEMETRY frame from a pre-encoded tail (the per-frame hot path)."""
    frame = (
        _EVB1_TELEMETRY_HEAD.pack(
            EVB1_MAGIC, EVB1_VERSION, Evb1Type.TELEMETRY, seq, _EVB1_TELEMETRY_BODY, int(ts)
        )
        + tail
    )
    return frame + _U16.pack(crc16_ccitt_false(memoryview(frame)[2:]))


def evb1_fault(seq: int, fault: Fault) -> bytes:
    body = _EVB1_FAULT.pack(int(fault.ts), fault.code, fault.severity, fault.subsystem, fault.value)
    return evb1_frame(Evb1Type.FAULT, seq, body)


def evb1_heartbeat(seq: int, ts: float, rssi_dbm: int, uptime_s: float) -> bytes:
    body = _EVB1_HEARTBEAT.pack(int(ts), _clamp(rssi_dbm, -128, 127), int(uptime_s))
    return evb1_frame(Evb1Type.HEARTBEAT, seq, body)


def evb1_cells(seq: int, ts: float, cells_mv: Sequence[int]) -> bytes:
    cells = cells_mv[:_EVB1_MAX_CELLS]
    body = struct.pack(f">IB{len(cells)}H", int(ts), len(cells), *cells)
    return evb1_frame(Evb1Type.CELLS, seq, body)


# --- Teltonika Codec 8 (wiki: Teltonika Data Sending Protocols, Codec 8) ----------------------

TELTONIKA_CODEC8 = 0x08
TELTONIKA_KEEPALIVE = b"\xff"
PRIORITY_LOW = 0
PRIORITY_PANIC = 2

# FMB AVL ids (wiki: FMB AVL ID list).
IO_IGNITION = 239
IO_MOVEMENT = 240
IO_GSM_SIGNAL = 21
IO_BATTERY_LEVEL = 113  # % -> here the traction battery's SoC
IO_EXTERNAL_VOLTAGE = 66  # mV -> the 12 V supply
IO_BATTERY_VOLTAGE = 67  # mV -> the unit's own backup cell
IO_ODOMETER = 16  # total odometer, m
IO_TEMPERATURE = 72  # Dallas temperature 1, 0.1 degC -> the hottest cell
# The IO whose change triggered a fault record ("event IO id").
FAULT_EVENT_IO = {FaultKind.BATTERY_OVERTEMP: IO_TEMPERATURE, FaultKind.ISOLATION: 252}
_BACKUP_CELL_MV = 4_100

_TELTONIKA_RECORD_HEAD = struct.Struct(">QB")  # timestamp ms, priority
# lon, lat, altitude, angle, satellites, speed, event IO id, total IO count, then the groups:
# 4 x 1-byte (239, 240, 21, 113), 2 x 2-byte (66, 67), 2 x 4-byte (16, 72), 0 x 8-byte.
_TELTONIKA_RECORD_TAIL = struct.Struct(
    ">iihHBHBB" + "B" + "BB" * 4 + "B" + "BH" * 2 + "B" + "BI" * 2 + "B"
)
_TELTONIKA_HEADER = struct.Struct(">II")
_U32 = struct.Struct(">I")


def teltonika_login(imei: str) -> bytes:
    """``000F`` + the IMEI in ASCII."""
    return _U16.pack(len(imei)) + imei.encode("ascii")


def teltonika_record_tail(state: VehicleState, event_io: int = 0) -> bytes:
    """An AVL record after its timestamp and priority."""
    return _TELTONIKA_RECORD_TAIL.pack(
        round(state.lon * 1e7),
        round(state.lat * 1e7),
        _clamp(state.alt_m, -0x8000, 0x7FFF),
        state.heading_deg,
        state.satellites,
        _clamp(state.speed_kmh, 0, 0xFFFF),
        event_io,
        8,
        4,
        IO_IGNITION,
        int(state.ignition),
        IO_MOVEMENT,
        int(state.speed_kmh > 0),
        IO_GSM_SIGNAL,
        _clamp((state.rssi_dbm + 113) / 10, 0, 5),
        IO_BATTERY_LEVEL,
        _clamp(state.soc_pct, 0, 100),
        2,
        IO_EXTERNAL_VOLTAGE,
        _clamp(state.aux_voltage_v * 1000, 0, 0xFFFF),
        IO_BATTERY_VOLTAGE,
        _BACKUP_CELL_MV,
        2,
        IO_ODOMETER,
        _clamp(state.odometer_km * 1000, 0, 0xFFFFFFFF),
        IO_TEMPERATURE,
        _clamp(state.cell_t_max_c * 10, 0, 0x7FFFFFFF),
        0,
    )


def teltonika_record(ts: float, priority: int, tail: bytes) -> bytes:
    return _TELTONIKA_RECORD_HEAD.pack(int(ts * 1000), priority) + tail


def teltonika_packet(records: Sequence[bytes]) -> bytes:
    """A Codec 8 AVL packet of these records (at most 255), CRC-16/ARC over codec id .. NoD2."""
    count = bytes((len(records),))
    data = bytes((TELTONIKA_CODEC8,)) + count + b"".join(records) + count
    return _TELTONIKA_HEADER.pack(0, len(data)) + data + _U32.pack(crc16_arc(data))


# --- GT06 (Concox "GPS Tracker Communication Protocol (GT06)", doc sections 5.1-5.4) ----------

GT06_START = b"\x78\x78"
GT06_STOP = b"\r\n"


class Gt06Protocol(enum.IntEnum):
    LOGIN = 0x01
    LOCATION = 0x12
    STATUS = 0x13
    ALARM = 0x16
    LOCATION_2 = 0x22  # the newer Concox location packet (JM-VL01 sheet)


# Alarm byte of the status block (doc 5.3.1.21): the GT06 has no battery alarms, so a thermal
# emergency is sent as SOS and a high-voltage isolation fault as a power cut.
GT06_ALARMS = {FaultKind.BATTERY_OVERTEMP: 0x01, FaultKind.ISOLATION: 0x02}
_RAW_PER_DEGREE = 1_800_000  # minutes x 30000 (doc 5.2.1.6)
_NORTH = 0x0400
_WEST = 0x0800
_POSITIONED = 0x1000
_GPS_INFO_LENGTH = 0xC0  # high nibble 12: GPS block length (doc 5.2.1.5)
_MCC_INDIA = 404
_MNC = 45  # Karnataka
_ENGLISH = 0x02
# GPS block after the date-time: info, lat, lon, speed, course/status; then the LBS block.
_GT06_GPS_TAIL = struct.Struct(">BIIBH")
_GT06_LBS = struct.Struct(">HBHBH")
_GT06_STATUS = struct.Struct(">5B")
_GT06_DATETIME = struct.Struct(">6B")


def gt06_frame(protocol: int, content: bytes, serial: int) -> bytes:
    """``7878``, length, protocol, content, serial, CRC-ITU over length .. serial, ``0d0a``."""
    body = bytes((len(content) + 5, protocol)) + content + _U16.pack(serial)
    return GT06_START + body + _U16.pack(crc16_x25(body)) + GT06_STOP


def gt06_login(imei: str, serial: int) -> bytes:
    """Login 0x01: the IMEI as BCD behind a leading 0 nibble (doc 5.1.3)."""
    return gt06_frame(Gt06Protocol.LOGIN, bytes.fromhex("0" + imei), serial)


def gt06_datetime(ts: float) -> bytes:
    t = time.gmtime(int(ts))
    return _GT06_DATETIME.pack(t.tm_year - 2000, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def gt06_tail(state: VehicleState) -> bytes:
    """GPS block after its date-time, then the LBS block (a location packet's content tail)."""
    course = state.heading_deg & 0x03FF
    course |= _NORTH if state.lat >= 0 else 0
    course |= _WEST if state.lon < 0 else 0
    course |= _POSITIONED if state.gps_valid else 0
    gps = _GT06_GPS_TAIL.pack(
        _GPS_INFO_LENGTH | min(state.satellites, 15),
        round(abs(state.lat) * _RAW_PER_DEGREE),
        round(abs(state.lon) * _RAW_PER_DEGREE),
        _clamp(state.speed_kmh, 0, 255),
        course,
    )
    return gps + _gt06_lbs(state)


def _gt06_lbs(state: VehicleState) -> bytes:
    # A cell grid of about 1 km: the serving cell follows the position.
    cell = round(state.lat * 100) * 1000 + round(state.lon * 100) % 1000
    return _GT06_LBS.pack(
        _MCC_INDIA, _MNC, 0x1000 + round(state.lat * 10) % 100, cell >> 16, cell & 0xFFFF
    )


def gt06_tail_2(state: VehicleState) -> bytes:
    """A 0x22 location's content after its date-time: GPS, LBS, then ACC, data upload mode
    (0: at a fixed interval), GPS re-upload (0: real time) and mileage in metres (JM-VL01)."""
    upload = bytes((int(state.ignition), 0, 0))
    return gt06_tail(state) + upload + _U32.pack(_clamp(state.odometer_km * 1000, 0, 0xFFFFFFFF))


def gt06_location(
    ts: float, tail: bytes, serial: int, protocol: int = Gt06Protocol.LOCATION
) -> bytes:
    """A location (0x12 with ``gt06_tail``, 0x22 with ``gt06_tail_2``) from a pre-encoded tail
    (the per-frame hot path)."""
    body = bytes((len(tail) + 11, protocol)) + gt06_datetime(ts) + tail + _U16.pack(serial)
    return GT06_START + body + _U16.pack(crc16_x25(body)) + GT06_STOP


def gt06_status_block(state: VehicleState, alarm: int = 0) -> bytes:
    """Terminal info, voltage level 0-6, GSM 0-4, alarm, language (doc 5.4.1)."""
    info = 0x40 if state.gps_valid else 0  # GPS tracking on
    info |= 0x04 if state.charging else 0
    info |= 0x02 if state.ignition else 0  # ACC high
    voltage = _clamp(state.soc_pct * 6 / 100, 0, 6)
    gsm = _clamp((state.rssi_dbm + 113) / 12, 0, 4)
    return _GT06_STATUS.pack(info, voltage, gsm, alarm, _ENGLISH)


def gt06_status(state: VehicleState, serial: int) -> bytes:
    """Status / heartbeat 0x13."""
    return gt06_frame(Gt06Protocol.STATUS, gt06_status_block(state), serial)


def gt06_alarm(state: VehicleState, fault: Fault, serial: int) -> bytes:
    """Alarm 0x16: GPS block, LBS led by its length byte, status block with the alarm byte."""
    tail = gt06_tail(state)
    gps, lbs = tail[: _GT06_GPS_TAIL.size], tail[_GT06_GPS_TAIL.size :]
    content = (
        gt06_datetime(fault.ts)
        + gps
        + bytes((len(lbs) + 1,))
        + lbs
        + gt06_status_block(state, GT06_ALARMS[fault.kind])
    )
    return gt06_frame(Gt06Protocol.ALARM, content, serial)


# --- AIS-140 (ARAI AIS-140; parser/ais140.py describes the packets) ---------------------------

AIS140_VENDOR = "EVSIM"
AIS140_FIRMWARE = "1.0.0"
AIS140_OPERATOR = "airtel"
# Packet type and alert id of a normal location update, and of the EV faults: the standard has
# no battery alerts, so a thermal emergency is sent as an emergency (EA, alert 10) and an
# isolation fault as a main power disconnect (alert 03).
AIS140_NORMAL = ("NR", 1)
AIS140_FAULTS = {FaultKind.BATTERY_OVERTEMP: ("EA", 10), FaultKind.ISOLATION: ("NR", 3)}
_AIS140_NMR = "0a83,e3c8,7,0a83,e3fb,7,0a83,c79d,10,0a83,e3f9,3"


def ais140_packet(body: str) -> bytes:
    """``$body*hh`` with the standard's XOR checksum (the CR LF goes on the wire, not here)."""
    raw = body.encode("ascii")
    checksum = 0
    for byte in raw:
        checksum ^= byte
    return b"$" + raw + b"*" + f"{checksum:02X}".encode()


def ais140_vehicle_reg(imei: str) -> str:
    """A registration number for the simulated vehicle, stable per device."""
    return f"KA01EV{imei[-4:]}"


def ais140_login(imei: str, state: VehicleState | None) -> bytes:
    """Login: header, vendor, registration, IMEI, firmware, protocol, last valid position."""
    lat, lon = (state.lat, state.lon) if state is not None else (0.0, 0.0)
    return ais140_packet(
        f"LGN,{AIS140_VENDOR},{ais140_vehicle_reg(imei)},{imei},{AIS140_FIRMWARE},AIS140,"
        f"{abs(lat):.6f},{'N' if lat >= 0 else 'S'},{abs(lon):.6f},{'E' if lon >= 0 else 'W'}"
    )


def ais140_tail(state: VehicleState, emergency: bool = False) -> str:
    """A tracking packet's fields from latitude through the digital outputs."""
    gsm = _clamp((state.rssi_dbm + 113) / 2, 0, 31)
    cell = round(state.lat * 100) * 1000 + round(state.lon * 100) % 1000
    return (
        f"{abs(state.lat):.6f},{'N' if state.lat >= 0 else 'S'},"
        f"{abs(state.lon):.6f},{'E' if state.lon >= 0 else 'W'},"
        f"{state.speed_kmh:.1f},{state.heading_deg:.1f},{state.satellites},{state.alt_m:.1f},"
        f"1.2,0.8,{AIS140_OPERATOR},{int(state.ignition)},1,{state.aux_voltage_v:.1f},4.1,"
        f"{int(emergency)},C,{gsm},{_MCC_INDIA},{_MNC},{0x1000 + round(state.lat * 10) % 100:x},"
        f"{cell & 0xFFFF:x},{_AIS140_NMR},{int(state.ignition)}000,00"
    )


def ais140_tracking(
    imei: str, ts: float, tail: str, frame_number: int, kind: tuple[str, int] = AIS140_NORMAL
) -> bytes:
    """A tracking packet (Table 1A) from a pre-encoded tail; live, GPS fix from the tail."""
    packet_type, alert_id = kind
    when = time.gmtime(int(ts))
    return ais140_packet(
        f"NRM,{AIS140_VENDOR},{AIS140_FIRMWARE},{packet_type},{alert_id:02d},L,{imei},"
        f"{ais140_vehicle_reg(imei)},1,{time.strftime('%d%m%Y,%H%M%S', when)},{tail},"
        f"{frame_number % 1_000_000:06d}"
    )


def ais140_health(imei: str, state: VehicleState) -> bytes:
    """Health packet: battery %, low-battery threshold %, memory %, update intervals, I/O."""
    return ais140_packet(
        f"HP,{AIS140_VENDOR},{AIS140_FIRMWARE},{imei},{_clamp(state.soc_pct, 0, 100)},20,5,"
        f"1,60,{int(state.ignition)}000,00"
    )
