"""The building blocks of GT06 family packets (the Concox documents, "doc"), read in order.

:class:`ContentReader` walks one packet's content and turns running out into a ``bad_body``
DecodeError; the block readers fill a :class:`Parts` that :func:`reading_of` turns into a
Reading, keeping whatever follows the known prefix. ``gt06_packets`` says which blocks each
protocol number carries.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

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
# The GPS block then the LBS block of the original location packet: MCC 2, MNC 1, LAC 2 and the
# 3-byte cell id as a byte and a word.
_GPS_LBS = struct.Struct(">6BBIIBH" + "HBHBH")
_STATUS_MIN_BYTES = 4  # language is left out by some firmwares (31-byte alarms)
# Raw latitude/longitude = minutes x 30000 (doc 5.2.1.6 - 5.2.1.7), so degrees = raw / 1,800,000
# and in units of 1e-7 degree (the precision kept) the value is raw * 50 / 9.
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
_EPOCH_DATE = date(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)

Attrs = dict[str, AttrValue]
Ints = tuple[int, ...]  # outside ContentReader, whose int method shadows the type there
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

    # take, int and unpack check the bounds themselves rather than through ``left`` or each
    # other: a location packet makes about ten of these calls, and a property or method call
    # less in each is a tenth of its decode time.
    def take(self, n: int, what: str) -> bytes:
        at = self.at
        end = at + n
        if end > len(self.data):
            raise self._short(n, what)
        self.at = end
        return self.data[at:end]

    # Before int(): below it, ``int`` in an annotation names the method.
    def _short(self, n: int, what: str) -> DecodeError:
        return DecodeError(
            "bad_body", f"protocol 0x{self.protocol:02x}: {what} needs {n} bytes, {self.left} left"
        )

    def int(self, n: int, what: str) -> int:
        at = self.at
        end = at + n
        if end > len(self.data):
            raise self._short(n, what)
        self.at = end
        return int.from_bytes(self.data[at:end], "big")

    def unpack(self, layout: struct.Struct, what: str) -> Ints:
        """The next ``layout.size`` bytes unpacked (no intermediate slice)."""
        at = self.at
        if at + layout.size > len(self.data):
            raise self._short(layout.size, what)
        self.at = at + layout.size
        values: Ints = layout.unpack_from(self.data, at)
        return values

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
    if zone is UTC and hh < 24 and mi < 60 and ss < 60:
        # The default zone: plain arithmetic on the day number, a third of building an aware
        # datetime and subtracting the epoch. Other zones (and impossible times, whose error
        # datetime words) take the long way.
        days = _utc_days.get(yy << 16 | mo << 8 | dd)
        if days is None:
            days = _utc_day(yy, mo, dd)
        return ((days * 24 + hh) * 60 + mi) * 60_000 + ss * 1000
    when = datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=zone)
    return (when - _EPOCH) // _ONE_MS


# Days since the epoch by packed YY MM DD: a fleet's packets share a handful of dates.
_utc_days: dict[int, int] = {}
_UTC_DAYS_KEPT = 4096


def _utc_day(yy: int, mo: int, dd: int) -> int:
    # date() raises the ValueError datetime() would for an impossible date.
    days = (date(2000 + yy, mo, dd) - _EPOCH_DATE).days
    if len(_utc_days) >= _UTC_DAYS_KEPT:
        _utc_days.clear()
    _utc_days[yy << 16 | mo << 8 | dd] = days
    return days


def gps_block(reader: ContentReader, parts: Parts, zone: tzinfo) -> None:
    """GPS block (doc 5.2.1.4 - 5.2.1.9)."""
    yy, mo, dd, hh, mi, ss, info, lat_raw, lon_raw, speed, cs = reader.unpack(_GPS, "GPS block")
    parts.ts_ms = local_ms(zone, yy, mo, dd, hh, mi, ss)
    parts.position = position_of(info & 0x0F, lat_raw, lon_raw, speed, cs)
    gps_flags(parts, cs, speed)


def gps_lbs_blocks(reader: ContentReader, parts: Parts, zone: tzinfo) -> None:
    """A GPS block then a 2G LBS block, as :func:`gps_block` and :func:`read_lbs` (2-byte LAC,
    3-byte cell id) read them: the shape of nearly every location packet, in one unpack instead
    of five reads. A two-byte MNC, or content too short (whose error the block readers word),
    takes the block readers' way."""
    data, at = reader.data, reader.at
    if len(data) - at < _GPS_LBS.size or data[at + _GPS.size] & (_MNC_TWO_BYTES >> 8):
        gps_block(reader, parts, zone)
        read_lbs(reader, parts, lac_bytes=2, cell_bytes=3)
        return
    (yy, mo, dd, hh, mi, ss, info, lat_raw, lon_raw, speed, cs, mcc, mnc, lac, cell_hi, cell_lo) = (
        _GPS_LBS.unpack_from(data, at)
    )
    reader.at = at + _GPS_LBS.size
    parts.ts_ms = local_ms(zone, yy, mo, dd, hh, mi, ss)
    parts.position = position_of(info & 0x0F, lat_raw, lon_raw, speed, cs)
    gps_flags(parts, cs, speed)
    attrs = parts.attrs  # stored one by one: cheaper than building a dict to update with
    attrs["mcc"] = mcc
    attrs["mnc"] = mnc
    attrs["lac"] = lac
    attrs["cell_id"] = cell_hi << 16 | cell_lo


def text_of(data: bytes) -> str:
    return data.rstrip(b"\x00").decode("ascii", "replace")


def position_of(
    sats: int | None, lat_raw: int, lon_raw: int, speed: int | None, cs: int
) -> Position:
    # Raw values are unsigned; the hemisphere lives only in the course/status flags.
    lat = _degrees(lat_raw)
    lon = _degrees(lon_raw)
    if not cs & _NORTH and lat_raw:
        lat = -lat
    if cs & _WEST and lon_raw:
        lon = -lon
    # lat, lon, alt_m, speed_kmh, heading_deg, satellites, valid: positional arguments build a
    # Struct faster than keywords.
    return Position(lat, lon, None, speed, cs & _COURSE_MASK, sats, bool(cs & _POSITIONED))


def _degrees(raw: int) -> float:
    """``round(raw / 1_800_000, 7)``, the value in degrees to 7 places, at a third of its cost.

    In units of 1e-7 degree the value is raw * 50 / 9, so the rounding is integer arithmetic
    (its fraction is a ninth, never a half, and too far from one for the float's error to
    matter), and int / int is correctly rounded, as round()'s decimal result is: the same float
    (tests check).
    """
    return (raw * 50 + 4) // 9 / 10_000_000


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
    # Positional (faster than keywords); a fresh dict for ``io``, as its default would be.
    return Reading(kind, parts.ts_ms, parts.position, parts.metrics, {}, parts.alarms, parts.attrs)
