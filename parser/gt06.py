"""Concox GT06 over TCP: framing, login, replies and decoding of location, status and alarm packets.

References are to the Concox "GPS Tracker Communication Protocol (GT06)" document ("doc"). A frame
is ``7878`` + 1-byte length (or ``7979`` + 2-byte length), protocol number, content, 2-byte serial,
2-byte CRC-ITU (CRC-16/X-25 over the length field through the serial) and ``0d0a``; the length
counts protocol number through CRC.
"""

from __future__ import annotations

import enum
import struct
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from parser.codec import CodecOptions
from parser.crc import crc16_x25
from parser.errors import DecodeError
from parser.events import Action, Event, Frame, Login, Reject
from parser.records import Alarm, AttrValue, MetricValue, Position, Reading
from parser.resync import find_sync, garbage

# 7878 frames are at most 5 + 255 = 260 bytes; 7979 "information transmission" packets are
# longer but still small, so 1 KiB bounds any real frame with room to spare while capping what a
# hostile peer can make us buffer (and the tolerant end scan below) per connection.
DEFAULT_MAX_FRAME_BYTES = 1024
# The smallest frame: marker 2 + length 1 + protocol 1 + serial 2 + CRC 2 + 0d0a 2 (a reply).
_MIN_FRAME_BYTES = 10
# Protocol number + serial + CRC: the fewest bytes the length field can cover.
_MIN_BODY_BYTES = 5
# 0d0a pairs tried as the end of one frame before its start is given up. A real body holds the
# pair about once in 65536 / length frames, never several times, while a hostile stream dense in
# markers and 0d0a would otherwise cost a CRC per pair per start: ~150 us of CPU per byte
# uncapped, under 8 us with this cap (about 3 us is the floor: one bad_frame reject per byte).
_MAX_END_CANDIDATES = 4

_SHORT = b"\x78\x78"
_LONG = b"\x79\x79"
_MARKERS = (_SHORT, _LONG)
_STOP = b"\r\n"

_U16 = struct.Struct(">H")
# GPS block (doc 5.2.1): date-time YY MM DD hh mm ss, info (length << 4 | satellites), latitude,
# longitude, speed, course/status.
_GPS = struct.Struct(">6BBIIBH")
# LBS block (doc 5.2.1): MCC, MNC, LAC, cell id as a 24-bit integer (high byte + low word).
_LBS = struct.Struct(">HBHBH")
# Status block (doc 5.4.1): terminal info, voltage level, GSM signal, alarm, language.
_STATUS = struct.Struct(">5B")

_GPS_BYTES = _GPS.size  # 18
_LOCATION_MIN_BYTES = _GPS_BYTES + _LBS.size  # 26; more is a vendor extension
_ALARM_BYTES = _GPS_BYTES + 1 + _LBS.size + _STATUS.size  # 32: lbs_length byte before the LBS
_LOGIN_BYTES = 8  # terminal id, BCD (doc 5.1)
_LOGIN_EXTENDED_BYTES = 12  # + type id 2 + timezone/language 2 (GT06N / Jimi firmwares)

# Raw latitude/longitude = minutes x 30000 (doc 5.2.1.6 - 5.2.1.7), so degrees = raw / 1,800,000.
_RAW_PER_DEGREE = 1_800_000
# Course/status word (doc 5.2.1.9): course in the low 10 bits, flags in byte 1.
_COURSE_MASK = 0x03FF
_NORTH = 0x0400  # byte 1 bit 2: 1 = north latitude
_WEST = 0x0800  # byte 1 bit 3: 1 = west longitude
_POSITIONED = 0x1000  # byte 1 bit 4: the fix is current
_DIFFERENTIAL = 0x2000  # byte 1 bit 5: differential fix (0 = real-time)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


class Gt06Protocol(enum.IntEnum):
    """Protocol numbers this codec knows (doc section 5)."""

    LOGIN = 0x01
    LOCATION = 0x12
    STATUS = 0x13
    ALARM = 0x16
    INFORMATION = 0x94  # 7979 "information transmission": framed and kept raw, not decoded


# Packets the server answers with ``7878 05 <protocol> <serial> <crc> 0d0a``: login (doc 5.1)
# and status/heartbeat (doc 5.4) must be answered or the terminal reconnects; the doc also
# defines the alarm reply (5.3.2) though the terminal does not enforce it, and Traccar sends it.
# The doc defines no reply for location 0x12, and 0x94 gets none (as in Traccar).
_REPLIED = frozenset({Gt06Protocol.LOGIN, Gt06Protocol.STATUS, Gt06Protocol.ALARM})

# Alarm byte of the status block (doc 5.3.1.21) -> (code, severity). Others map to gt06_0xNN.
ALARM_CODES: dict[int, tuple[str, str]] = {
    0x01: ("sos", "critical"),
    0x02: ("power_cut", "critical"),
    0x03: ("vibration", "warning"),
    0x04: ("fence_in", "info"),
    0x05: ("fence_out", "info"),
    0x06: ("overspeed", "warning"),
    0x09: ("displacement", "warning"),
}


def reply_for(protocol: int, serial: bytes) -> bytes:
    """The server response to a packet: always the short 7878 form, echoing protocol and serial."""
    body = bytes((5, protocol)) + serial
    return _SHORT + body + _U16.pack(crc16_x25(body)) + _STOP


def _header_bytes(frame: bytes) -> int:
    """Marker plus length field: 3 for 7878, 4 for 7979."""
    return 3 if frame[1] == 0x78 else 4


def _zone(name: str) -> tzinfo:
    # "UTC" needs no tz database; everything else must resolve now, not on the first frame.
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


class Gt06Codec:
    """Makes GT06 sessions and decodes GT06 frames; ``decode`` is pure."""

    name = "gt06"
    transports = frozenset({"tcp"})

    def __init__(self, options: CodecOptions) -> None:
        max_frame = options.max_frame_bytes or DEFAULT_MAX_FRAME_BYTES
        if max_frame < _MIN_FRAME_BYTES:
            raise ValueError(f"max_frame_bytes must be at least {_MIN_FRAME_BYTES}")
        self.max_frame_bytes = max_frame
        self.allowed_devices = options.allowed_devices
        # The device clock's zone (doc: GMT command); date-times are local to it.
        self._zone = _zone(options.timezone)

    def session(self) -> Gt06Session:
        return Gt06Session(self)

    def decode(self, payload: bytes) -> tuple[Reading, ...]:
        """Readings of one whole, CRC-checked frame (start marker through 0d0a)."""
        if len(payload) < _MIN_FRAME_BYTES or payload[:2] not in _MARKERS:
            raise DecodeError("bad_body", f"not a GT06 frame ({len(payload)} bytes)")
        header = _header_bytes(payload)
        protocol = payload[header]
        content = payload[header + 1 : -6]
        try:
            if protocol == Gt06Protocol.LOCATION:
                return (self._location(content),)
            if protocol == Gt06Protocol.STATUS:
                return (_heartbeat(content),)
            if protocol == Gt06Protocol.ALARM:
                return (self._alarm(content),)
            if protocol == Gt06Protocol.LOGIN:
                return (_login(content)[1],)
        except ValueError as exc:  # an impossible date-time
            raise DecodeError("bad_body", f"protocol 0x{protocol:02x}: {exc}") from exc
        raise DecodeError("unknown_type", f"protocol 0x{protocol:02x}")

    def _gps(self, content: bytes) -> tuple[int, Position, bool]:
        """Time, fix and differential flag of a GPS block (doc 5.2.1.4 - 5.2.1.9)."""
        yy, mo, dd, hh, mi, ss, info, lat_raw, lon_raw, speed, cs = _GPS.unpack_from(content)
        ts_ms = (datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=self._zone) - _EPOCH) // _ONE_MS
        # Raw values are unsigned; the hemisphere lives only in the course/status flags.
        lat = round(lat_raw / _RAW_PER_DEGREE, 7)
        lon = round(lon_raw / _RAW_PER_DEGREE, 7)
        if not cs & _NORTH and lat_raw:
            lat = -lat
        if cs & _WEST and lon_raw:
            lon = -lon
        position = Position(
            lat=lat,
            lon=lon,
            alt_m=None,
            speed_kmh=speed,
            heading_deg=cs & _COURSE_MASK,
            satellites=info & 0x0F,
            valid=bool(cs & _POSITIONED),
        )
        return ts_ms, position, bool(cs & _DIFFERENTIAL)

    def _location(self, content: bytes) -> Reading:
        """Location packet 0x12 (doc 5.2.1): GPS block, LBS block, optional vendor extension."""
        if len(content) < _LOCATION_MIN_BYTES:
            raise DecodeError("bad_body", f"location content is {len(content)} bytes, not >= 26")
        ts_ms, position, differential = self._gps(content)
        attrs = _lbs(content, _GPS_BYTES)
        attrs["gps_differential"] = differential
        extra = content[_LOCATION_MIN_BYTES:]
        if extra:
            # Variant firmwares append fields (temperature, ACC, mileage …) with no common layout.
            attrs["lbs_extra"] = extra.hex()
        return Reading(
            kind="telemetry",
            ts_ms=ts_ms,
            position=position,
            metrics={"speed_kmh": position.speed_kmh},
            attrs=attrs,
        )

    def _alarm(self, content: bytes) -> Reading:
        """Alarm packet 0x16 (doc 5.3.1): GPS, LBS led by its length byte, status block."""
        if len(content) != _ALARM_BYTES:
            raise DecodeError("bad_body", f"alarm content is {len(content)} bytes, not 32")
        ts_ms, position, differential = self._gps(content)
        attrs = _lbs(content, _GPS_BYTES + 1)
        attrs["gps_differential"] = differential
        metrics, status_attrs = _status(content, _ALARM_BYTES - _STATUS.size)
        metrics["speed_kmh"] = position.speed_kmh
        attrs.update(status_attrs)
        alarm_byte = content[-2]
        return Reading(
            kind="alarm",
            ts_ms=ts_ms,
            position=position,
            metrics=metrics,
            alarms=(_alarm_of(alarm_byte),) if alarm_byte else (),
            attrs=attrs,
        )


def _alarm_of(value: int) -> Alarm:
    code, severity = ALARM_CODES.get(value, (f"gt06_0x{value:02x}", "warning"))
    return Alarm(code=code, severity=severity, subsystem="tcu", value=value)


def _lbs(content: bytes, offset: int) -> dict[str, AttrValue]:
    mcc, mnc, lac, cell_hi, cell_lo = _LBS.unpack_from(content, offset)
    return {"mcc": mcc, "mnc": mnc, "lac": lac, "cell_id": cell_hi << 16 | cell_lo}


def _status(content: bytes, offset: int) -> tuple[dict[str, MetricValue], dict[str, AttrValue]]:
    """Status block (doc 5.4.1; the alarm packet repeats it, 5.3.1) as metrics and attributes."""
    info, voltage, gsm, alarm, language = _STATUS.unpack_from(content, offset)
    metrics: dict[str, MetricValue] = {
        "charging": bool(info & 0x04),
        "ignition": bool(info & 0x02),  # ACC high
        "gps_tracking": bool(info & 0x40),
        "power_cut": bool(info & 0x80),  # oil and electricity disconnected
        "voltage_level": voltage,  # 0-6 per the doc
        "gsm_signal": gsm,  # 0-4 per the doc; some firmwares send a percentage
    }
    attrs: dict[str, AttrValue] = {
        "armed": bool(info & 0x01),  # "activated"
        "terminal_alarm_bits": info >> 3 & 0x07,
        "alarm": alarm,
        "language": language,
    }
    return metrics, attrs


def _heartbeat(content: bytes) -> Reading:
    """Status/heartbeat packet 0x13 (doc 5.4.1): exactly the 5-byte status block."""
    if len(content) != _STATUS.size:
        raise DecodeError("bad_body", f"status content is {len(content)} bytes, not 5")
    metrics, attrs = _status(content, 0)
    return Reading(kind="heartbeat", ts_ms=None, metrics=metrics, attrs=attrs)


def _login(content: bytes) -> tuple[str, Reading]:
    """IMEI and reading of a login packet 0x01 (doc 5.1)."""
    size = len(content)
    if size not in (_LOGIN_BYTES, _LOGIN_EXTENDED_BYTES):
        raise DecodeError("bad_body", f"login content is {size} bytes, not 8 or 12")
    # The 15-digit IMEI is BCD-packed into 8 bytes behind a leading 0 nibble (doc 5.1.3).
    imei = content[:_LOGIN_BYTES].hex()[1:]
    attrs: dict[str, AttrValue] = {}
    if size == _LOGIN_EXTENDED_BYTES:
        # Type id and timezone/language: kept raw, their encoding differs between firmwares.
        attrs = {"type_id": content[8:10].hex(), "tz_language": content[10:12].hex()}
    return imei, Reading(kind="login", ts_ms=None, attrs=attrs)


class Gt06Session:
    """One connection: frames the stream, checks CRCs, tracks the login, builds events.

    Framing tolerates a wrong length field (a real device quirk; Traccar scans for ``0d0a``): the
    frame ends at the first ``0d0a`` within ``max_frame_bytes`` of the start whose two preceding
    bytes are the CRC of what precedes them. The declared end is normally that first ``0d0a``; if it
    carries a bad CRC the declared frame is dropped (doc 4.6). A start with no such end within the
    bound, or after ``_MAX_END_CANDIDATES`` failed ones, is given up one byte at a time. Every
    decision depends only on bytes already seen, so any chunking of a stream yields the same events.
    """

    __slots__ = (
        "_closed",
        "_codec",
        "_device_id",
        "_max_frame",
        "_rest",
        "_scan_from",
        "_skipped",
        "_tried",
    )

    def __init__(self, codec: Gt06Codec) -> None:
        self._codec = codec
        self._max_frame = codec.max_frame_bytes
        self._device_id: str | None = None
        self._rest = b""  # an incomplete frame from its marker, or a partial marker
        self._skipped = 0  # length of the current run of non-frame bytes, not yet reported
        self._scan_from = 0  # offset in _rest of the first 0d0a not yet tried as a frame end
        self._tried = 0  # 0d0a pairs already tried (and failed) as its end
        self._closed = False

    @property
    def device_id(self) -> str | None:
        return self._device_id

    @property
    def buffered_bytes(self) -> int:
        return len(self._rest)

    def feed(self, data: bytes) -> list[Event]:
        if self._closed:
            return []
        buf = self._rest + data if self._rest else data
        end = len(buf)
        max_frame = self._max_frame
        # Progress of the end scan for a frame start held over from the previous feed.
        scan_from, tried_before = self._scan_from, self._tried
        self._scan_from = self._tried = 0
        events: list[Event] = []
        pos = 0
        while pos < end:
            marker = buf[pos : pos + 2]
            if marker not in _MARKERS:
                start, found = find_sync(buf, pos, _MARKERS)
                self._skipped += start - pos
                pos = start
                if not found:
                    break  # at most a partial marker is left
                marker = buf[pos : pos + 2]
            if self._skipped:
                events.append(garbage(self._skipped))
                self._skipped = 0
            header = 3 if marker == _SHORT else 4
            if end - pos < header:
                break
            length = buf[pos + 2] if header == 3 else _U16.unpack_from(buf, pos + 2)[0]
            declared = pos + header + length  # where the 0d0a should be
            limit = min(end, pos + max_frame)
            stop = buf.find(_STOP, max(pos + header + _MIN_BODY_BYTES, pos + scan_from), limit)
            scan_from = 0
            tried, tried_before = tried_before, 0
            crc = stored = -1
            while stop >= 0:
                crc = crc16_x25(buf[pos + 2 : stop - 2])
                stored = _U16.unpack_from(buf, stop - 2)[0]
                if crc == stored or stop == declared:
                    break
                tried += 1
                if tried == _MAX_END_CANDIDATES:
                    break
                stop = buf.find(_STOP, stop + 1, limit)
            if stop < 0 and limit - pos < max_frame:
                # Every 0d0a seen so far was tried; the next candidate may end at end - 1.
                self._scan_from = end - 1 - pos
                self._tried = tried
                break
            if stop < 0 or tried == _MAX_END_CANDIDATES:
                events.append(
                    Reject(
                        "bad_frame",
                        f"no 0d0a with a valid crc within {max_frame} bytes of {marker.hex()}",
                        Action.RESYNC,
                        skipped_bytes=1,
                    )
                )
                pos += 1
            elif crc != stored:  # the declared end, with a bad CRC
                # Doc 4.6: on a CRC error the receiver discards the packet and sends nothing.
                events.append(
                    Reject(
                        "crc_mismatch",
                        f"frame crc {buf[stop - 2 : stop].hex()}, computed {crc:04x}",
                        Action.RESYNC,
                        skipped_bytes=stop + 2 - pos,
                    )
                )
                pos = stop + 2
            else:
                frame = buf[pos : stop + 2]
                pos = stop + 2
                event = self._event(frame, header)
                events.append(event)
                if isinstance(event, Reject):  # a refused login ends the session
                    self._close()
                    return events
        self._rest = buf[pos:]
        return events

    def eof(self) -> list[Event]:
        if self._closed:
            return []
        events: list[Event] = []
        rest = self._rest
        if rest[:2] in _MARKERS:
            events.append(
                Reject(
                    "truncated",
                    f"stream ended inside a frame ({len(rest)} bytes)",
                    Action.CLOSE,
                    skipped_bytes=len(rest),
                )
            )
        else:
            self._skipped += len(rest)  # a partial marker is garbage once nothing can follow
        if self._skipped:
            events.insert(0, garbage(self._skipped))
        self._rest = b""
        self._skipped = 0
        self._scan_from = self._tried = 0
        return events

    def _close(self) -> None:
        self._closed = True
        self._rest = b""
        self._skipped = 0

    def _event(self, frame: bytes, header: int) -> Event:
        """The event for one framed, CRC-checked frame."""
        protocol = frame[header]
        reply = reply_for(protocol, frame[-6:-4]) if protocol in _REPLIED else b""
        if protocol == Gt06Protocol.LOGIN:
            try:
                imei, reading = _login(frame[header + 1 : -6])
            except DecodeError as exc:
                # No identity to acknowledge: keep the raw frame, answer nothing.
                return Frame(self._device_id, frame, b"", (), exc.code, exc.detail)
            allowed = self._codec.allowed_devices
            if allowed is not None and imei not in allowed:
                return Reject(
                    "device_refused",
                    f"device {imei} is not allowed",
                    Action.CLOSE,
                    skipped_bytes=len(frame),
                )
            self._device_id = imei
            return Login(device_id=imei, reply=reply, payload=frame, readings=(reading,))
        try:
            readings = self._codec.decode(frame)
        except DecodeError as exc:
            # The frame passed its CRC, so it is still a raw record; the reply (heartbeat and
            # alarm) still acknowledges receipt so the terminal does not reconnect.
            return Frame(self._device_id, frame, reply, (), exc.code, exc.detail)
        return Frame(self._device_id, frame, reply, readings)
