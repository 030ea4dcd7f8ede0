"""The building blocks of GT06 family packets (the Concox documents, "doc"), read in order.

:class:`ContentReader` walks one packet's content and turns running out into a ``bad_body``
DecodeError; the block readers fill a :class:`Parts` that :func:`reading_of` turns into a
Reading, keeping whatever follows the known prefix. ``gt06_packets`` says which blocks each
protocol number carries.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from parser.errors import DecodeError
from parser.records import Alarm, AttrValue, Kind, MetricValue, Position, Reading

_LOCATION = 0x12  # the original location packet keeps its appended bytes as "lbs_extra"

# Alarm byte of the status block (doc 5.3.1.21, extended by the JM sheets) -> (code, severity).
# Others map to gt06_0xNN.
ALARM_CODES: dict[int, tuple[str, str]] = {
    0x01: ("sos", "critical"),
    0x02: ("power_cut", "critical"),
    0x03: ("vibration", "warning"),
    0x04: ("fence_in", "info"),
    0x05: ("fence_out", "info"),
    0x06: ("overspeed", "warning"),
    0x09: ("displacement", "warning"),
    0x0E: ("low_battery", "warning"),
    0x0F: ("low_battery", "warning"),
    0x11: ("power_off", "warning"),
    0x13: ("tamper", "warning"),
    0x14: ("door", "info"),
    0x29: ("harsh_acceleration", "warning"),
    0x2C: ("collision", "critical"),
}

_GPS = struct.Struct(">6BBIIBH")
_GPS_BYTES = _GPS.size  # 18
_STATUS_MIN_BYTES = 4  # language is left out by some firmwares (31-byte alarms)
# Raw latitude/longitude = minutes x 30000 (doc 5.2.1.6 - 5.2.1.7), so degrees = raw / 1,800,000.
_RAW_PER_DEGREE = 1_800_000
# Course/status word (doc 5.2.1.9): course in the low 10 bits, flags in byte 1.
_COURSE_MASK = 0x03FF
_NORTH = 0x0400  # bit 10: 1 = north latitude
_WEST = 0x0800  # bit 11: 1 = west longitude
_POSITIONED = 0x1000  # bit 12: the fix is current
_DIFFERENTIAL = 0x2000  # bit 13: differential fix (0 = real-time)
_ACC_PRESENT = 0x4000  # bit 14: bit 15 carries ACC (JM sheets; the GT06 doc leaves both 0)
_ACC_ON = 0x8000
_MNC_TWO_BYTES = 0x8000  # MCC bit 15: the MNC takes two bytes (JM-VL03 sheet)
# Alarm packets whose LBS length byte is 0 may pad the absent block with 45 zero bytes (captures
# in Traccar's Gt06ProtocolDecoderTest, 0x16 with 69 content bytes).
_ZERO_LBS_PAD = 45

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

Attrs = dict[str, AttrValue]
Metrics = dict[str, MetricValue]


class ContentReader:
    """Reads a packet's content front to back; running out is a ``bad_body`` DecodeError."""

    __slots__ = ("at", "data", "protocol")

    def __init__(self, data: bytes, protocol: int) -> None:
        self.data = data
        self.at = 0
        self.protocol = protocol

    @property
    def left(self) -> int:
        return len(self.data) - self.at

    def take(self, n: int, what: str) -> bytes:
        if self.left < n:
            raise DecodeError(
                "bad_body",
                f"protocol 0x{self.protocol:02x}: {what} needs {n} bytes, {self.left} left",
            )
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def int(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def rest(self) -> bytes:
        chunk = self.data[self.at :]
        self.at = len(self.data)
        return chunk


@dataclass(slots=True)
class Parts:
    """What the blocks of one packet decoded to, assembled into a Reading at the end."""

    ts_ms: int | None = None
    position: Position | None = None
    metrics: Metrics = field(default_factory=dict)
    attrs: Attrs = field(default_factory=dict)
    alarms: tuple[Alarm, ...] = ()


def local_ms(zone: tzinfo, yy: int, mo: int, dd: int, hh: int, mi: int, ss: int) -> int:
    """Unix ms of a packet's date-time (YY MM DD hh mm ss, doc 5.2.1.4) in the device's zone."""
    when = datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=zone)
    return (when - _EPOCH) // _ONE_MS


def gps_block(reader: ContentReader, parts: Parts, zone: tzinfo) -> None:
    """GPS block (doc 5.2.1.4 - 5.2.1.9)."""
    yy, mo, dd, hh, mi, ss, info, lat_raw, lon_raw, speed, cs = _GPS.unpack(
        reader.take(_GPS_BYTES, "GPS block")
    )
    parts.ts_ms = local_ms(zone, yy, mo, dd, hh, mi, ss)
    parts.position = position_of(info & 0x0F, lat_raw, lon_raw, speed, cs)
    gps_flags(parts, cs, speed)


def text_of(data: bytes) -> str:
    return data.rstrip(b"\x00").decode("ascii", "replace")


def position_of(
    sats: int | None, lat_raw: int, lon_raw: int, speed: int | None, cs: int
) -> Position:
    # Raw values are unsigned; the hemisphere lives only in the course/status flags.
    lat = round(lat_raw / _RAW_PER_DEGREE, 7)
    lon = round(lon_raw / _RAW_PER_DEGREE, 7)
    if not cs & _NORTH and lat_raw:
        lat = -lat
    if cs & _WEST and lon_raw:
        lon = -lon
    return Position(
        lat=lat,
        lon=lon,
        alt_m=None,
        speed_kmh=speed,
        heading_deg=cs & _COURSE_MASK,
        satellites=sats,
        valid=bool(cs & _POSITIONED),
    )


def gps_flags(parts: Parts, cs: int, speed: int | None) -> None:
    parts.attrs["gps_differential"] = bool(cs & _DIFFERENTIAL)
    if speed is not None:
        parts.metrics["speed_kmh"] = speed
    if cs & _ACC_PRESENT:
        parts.metrics["ignition"] = bool(cs & _ACC_ON)


def read_lbs(
    reader: ContentReader, parts: Parts, *, lac_bytes: int, cell_bytes: int, mnc2: bool = False
) -> None:
    """LBS block (doc 5.2.1.10 - 5.2.1.13): MCC, MNC, LAC, cell id, sizes per packet type."""
    mcc = reader.int(2, "MCC")
    mnc = reader.int(2 if mnc2 or mcc & _MNC_TWO_BYTES else 1, "MNC")
    lac = reader.int(lac_bytes, "LAC")
    cell = reader.int(cell_bytes, "cell id")
    parts.attrs.update({"mcc": mcc & ~_MNC_TWO_BYTES, "mnc": mnc, "lac": lac, "cell_id": cell})


def lbs_with_length(reader: ContentReader, parts: Parts) -> None:
    """An alarm's LBS block led by its length (doc 5.3.1.13, counting the length byte). The size
    says which layout it holds: 2G (8 or 9 bytes with a 2-byte MNC) or 4G (15 or 16)."""
    length = reader.int(1, "LBS length")
    if not length:
        pad = reader.data[reader.at : reader.at + _ZERO_LBS_PAD]
        if len(pad) == _ZERO_LBS_PAD and not any(pad[9:]):
            reader.take(_ZERO_LBS_PAD, "zero LBS padding")
        return
    block = ContentReader(reader.take(length - 1, "LBS block"), reader.protocol)
    if block.left >= 15:
        read_lbs(block, parts, lac_bytes=4, cell_bytes=8)
    else:
        read_lbs(block, parts, lac_bytes=2, cell_bytes=3)


def upload_tail(reader: ContentReader, parts: Parts) -> None:
    """JM-VL01 / JM-VL03 tail of 0x22 and 0xA0: ACC, data upload mode, GPS real-time re-upload,
    then mileage on some firmwares. Optional: the oldest firmwares end after the LBS block."""
    if reader.left < 3:
        return
    parts.metrics["ignition"] = reader.int(1, "ACC") != 0
    parts.attrs["upload_mode"] = reader.int(1, "upload mode")
    parts.attrs["reupload"] = reader.int(1, "re-upload") != 0
    if reader.left >= 4:
        parts.metrics["odometer_m"] = reader.int(4, "mileage")


def status_block(reader: ContentReader, parts: Parts) -> None:
    """Status block (doc 5.4.1; alarm packets repeat it, 5.3.1): terminal info, voltage level
    0-6, GSM signal 0-4, alarm, language. Some firmwares leave the language out."""
    info, voltage, gsm, alarm = reader.take(_STATUS_MIN_BYTES, "status block")
    parts.metrics.update(terminal_info_metrics(info))
    parts.metrics["voltage_level"] = voltage
    parts.metrics["gsm_signal"] = gsm  # 0-4 per the doc; some firmwares send a percentage
    parts.attrs.update(terminal_info_attrs(info))
    parts.attrs["alarm"] = alarm
    if reader.left:
        parts.attrs["language"] = reader.int(1, "language")
    if alarm:
        parts.alarms = (alarm_of(alarm),)


def terminal_info_metrics(info: int) -> Metrics:
    return {
        "charging": bool(info & 0x04),
        "ignition": bool(info & 0x02),  # ACC high
        "gps_tracking": bool(info & 0x40),
        "power_cut": bool(info & 0x80),  # oil and electricity disconnected
    }


def terminal_info_attrs(info: int) -> Attrs:
    return {"armed": bool(info & 0x01), "terminal_alarm_bits": info >> 3 & 0x07}


def alarm_of(value: int) -> Alarm:
    code, severity = ALARM_CODES.get(value, (f"gt06_0x{value:02x}", "warning"))
    return Alarm(code=code, severity=severity, subsystem="tcu", value=value)


def reading_of(kind: Kind, parts: Parts, reader: ContentReader) -> Reading:
    extra = reader.rest()
    if extra:
        # Firmwares append fields (temperature, mileage, ...) with no common layout: kept (0x12
        # names them as it always did).
        key = "lbs_extra" if reader.protocol == _LOCATION else "extra"
        parts.attrs[key] = extra.hex()
    return Reading(
        kind=kind,
        ts_ms=parts.ts_ms,
        position=parts.position,
        metrics=parts.metrics,
        alarms=parts.alarms,
        attrs=parts.attrs,
    )
