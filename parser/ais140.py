"""AIS-140 (ARAI AIS-140, India's vehicle location tracking standard) over TCP: ASCII packets.

A packet is ``$`` + comma-separated fields + ``*``, optionally followed by a 2-digit hex checksum
(the XOR of every byte between ``$`` and ``*``, NMEA style, as the standard's login example has
it) and a CR LF. Three shapes (the standard's tables; state transport departments reorder a few
fields, which the ``variant`` option names):

- login: header, vendor id, vehicle registration, IMEI, firmware, protocol version, last valid
  latitude, N/S, longitude, E/W (the "LGN" form of some states drops the vendor id and the
  hemisphere letters);
- tracking (PVT, Table 1A): header, vendor id, firmware, packet type (NR normal, EA emergency,
  TA tamper, IN/IF ignition, BD/BR/BL battery, HB/HA/RT harsh driving, ...), alert id, packet
  status (L live, H history), IMEI, vehicle registration, GPS fix, date ddmmyyyy, time hhmmss
  (UTC), latitude, N/S, longitude, E/W, speed km/h, heading, satellites, altitude, PDOP, HDOP,
  operator, ignition, main power, main input voltage, internal battery voltage, emergency status,
  tamper (C closed / O open), GSM signal, MCC, MNC, LAC, cell id (hex), four neighbouring cells
  (12 fields), digital inputs, digital outputs, frame number, [checksum field];
- health (HP): header, vendor id, firmware, IMEI, battery %, low-battery threshold %, memory %,
  update interval with ignition on, with ignition off, digital I/O, analog I/O.

The device names itself by IMEI in every packet, so a tracking packet that arrives before any
login still identifies the connection. Devices expect no reply.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta, tzinfo
from functools import reduce
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from parser.codec import CodecOptions
from parser.errors import DecodeError
from parser.events import Action, Event, Frame, Login, Reject
from parser.records import Alarm, AttrValue, MetricValue, Position, Reading
from parser.resync import find_sync, garbage

# A tracking packet is about 250 bytes; 1 KiB bounds any real one with room to spare.
DEFAULT_MAX_FRAME_BYTES = 1024
_MIN_FRAME_BYTES = 64
_START = b"$"
_END = b"*"
_HEX = frozenset(b"0123456789abcdefABCDEF")
_SEPARATORS = frozenset(b"\r\n")
_TRACKING_MIN_FIELDS = 34  # through the serving cell id
_NMR_FIELDS = 12
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


class Ais140Variant(enum.Enum):
    """Where a device puts its checksum, per listener. ``standard``: 2 hex digits after ``*``,
    the XOR of every byte between ``$`` and ``*`` (the standard's login example); a packet
    ends after them. ``sum16``: the last field before ``*`` holds 4 hex digits, the 16-bit sum
    of every byte from ``$`` through the comma before it (devices for some states); a packet
    ends at its ``*``."""

    STANDARD = "standard"
    SUM16 = "sum16"


# Alert ids of the tracking packet (AIS-140 Table 1A "Alert ID") -> (code, severity); 01 and 02
# are plain (live / history) location updates.
ALERTS: dict[int, tuple[str, str]] = {
    3: ("main_power_disconnected", "critical"),
    4: ("low_battery", "warning"),
    5: ("low_battery_removed", "info"),
    6: ("main_power_connected", "info"),
    7: ("ignition_on", "info"),
    8: ("ignition_off", "info"),
    9: ("tamper", "warning"),
    10: ("emergency", "critical"),
    11: ("emergency_off", "info"),
    12: ("ota_parameter_change", "info"),
    13: ("harsh_braking", "warning"),
    14: ("harsh_acceleration", "warning"),
    15: ("rash_turning", "warning"),
    16: ("wire_disconnect", "warning"),
}
_LOCATION_ALERTS = frozenset({1, 2})
# Packet type of an emergency (panic button) packet: always a critical alarm.
EMERGENCY = "EA"


def _zone(name: str) -> tzinfo:
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


def xor_checksum(body: bytes) -> int:
    """The standard's checksum: XOR of the bytes between ``$`` and ``*``."""
    return reduce(int.__xor__, body, 0)


class Ais140Codec:
    """Makes AIS-140 sessions and decodes AIS-140 packets; ``decode`` is pure."""

    name = "ais140"
    transports = frozenset({"tcp"})

    def __init__(self, options: CodecOptions) -> None:
        max_frame = options.max_frame_bytes or DEFAULT_MAX_FRAME_BYTES
        if max_frame < _MIN_FRAME_BYTES:
            raise ValueError(f"ais140 max_frame_bytes must be at least {_MIN_FRAME_BYTES}")
        try:
            self.variant = Ais140Variant(options.variant)
        except ValueError:
            known = ", ".join(v.value for v in Ais140Variant)
            raise ValueError(
                f"unknown ais140 variant {options.variant!r}; known: {known}"
            ) from None
        self.max_frame_bytes = max_frame
        self.allowed_devices = options.allowed_devices
        self._zone = _zone(options.timezone)
        self._sum16 = self.variant is Ais140Variant.SUM16

    def session(self) -> Ais140Session:
        return Ais140Session(self)

    def check(self, frame: bytes) -> str | None:
        """Why a framed packet fails its checksum, or None if it passes."""
        star = frame.rindex(_END)
        body = frame[1:star]
        sent = frame[star + 1 :]
        if sent and int(sent, 16) != xor_checksum(body):
            return f"checksum {sent.decode()}, computed {xor_checksum(body):02X}"
        if self._sum16:
            comma = body.rfind(b",")
            field = body[comma + 1 :]
            total = sum(frame[: comma + 2]) & 0xFFFF
            if comma < 0 or not field or not set(field) <= _HEX or int(field, 16) != total:
                return f"checksum field {field.decode('ascii', 'replace')!r}, computed {total:04X}"
        return None

    def decode(self, payload: bytes) -> tuple[Reading, ...]:
        """The reading of one whole, checked packet (``$`` through ``*`` and its checksum)."""
        return (self._parse(payload)[1],)

    def _parse(self, payload: bytes) -> tuple[str, Reading]:
        """The IMEI and reading of one packet."""
        if payload[:1] != _START or _END not in payload:
            raise DecodeError("bad_body", f"not an AIS-140 packet ({len(payload)} bytes)")
        try:
            text = payload[1 : payload.rindex(_END)].decode("ascii")
        except UnicodeDecodeError:
            raise DecodeError("bad_body", "AIS-140 packets are ASCII") from None
        fields = [f.strip() for f in text.split(",")]
        fields += [""] * (_TRACKING_MIN_FIELDS - len(fields))  # short packets: empty fields
        count = len(text.split(","))
        try:
            if count >= _TRACKING_MIN_FIELDS and fields[5] in ("L", "H"):
                return fields[6], self._tracking(fields)
            if count in (11, 12) and _is_imei(fields[3]) and fields[4].isdigit():
                return fields[3], _health(fields)
            if _is_imei(fields[3]) and count >= 10:
                return fields[3], _login(fields, vendor=True)
            if _is_imei(fields[2]) and count >= 7:
                return fields[2], _login(fields, vendor=False)
        except (ValueError, IndexError) as exc:
            raise DecodeError("bad_body", f"AIS-140 field: {exc}") from None
        raise DecodeError("unknown_type", f"AIS-140 packet of {count} fields")

    def _tracking(self, f: list[str]) -> Reading:
        day, month, year = int(f[9][:2]), int(f[9][2:4]), int(f[9][4:])
        hh, mi, ss = int(f[10][:2]), int(f[10][2:4]), int(f[10][4:6])
        when = datetime(year, month, day, hh, mi, ss, tzinfo=self._zone)
        speed = float(f[15])
        satellites = int(f[17])
        position = Position(
            lat=_signed(f[11], f[12], "S"),
            lon=_signed(f[13], f[14], "W"),
            alt_m=_number(f[18]),
            speed_kmh=speed,
            heading_deg=_number(f[16]),
            satellites=satellites,
            valid=f[8] == "1",
        )
        metrics: dict[str, MetricValue] = {
            "speed_kmh": speed,
            "ignition": f[22] == "1",
            "main_power": f[23] == "1",
            "external_voltage_v": _number(f[24]),
            "battery_voltage_v": _number(f[25]),
            "emergency": f[26] == "1",
            "gsm_signal": _number(f[28]),
        }
        packet_type, alert_id = f[3], int(f[4]) if f[4].isdigit() else None
        attrs: dict[str, AttrValue] = {
            "header": f[0],
            "vendor_id": f[1],
            "firmware": f[2],
            "packet_type": packet_type,
            "alert_id": alert_id,
            "history": f[5] == "H",
            "vehicle_reg": f[7],
            "pdop": _number(f[19]),
            "hdop": _number(f[20]),
            "operator": f[21],
            "tamper_open": f[27] == "O",
            "mcc": _int(f[29]),
            "mnc": _int(f[30]),
            "lac": _hex(f[31]),
            "cell_id": _hex(f[32]),
        }
        rest = f[_TRACKING_MIN_FIELDS - 1 :]
        if len(rest) >= _NMR_FIELDS:
            attrs["nmr"] = ",".join(rest[:_NMR_FIELDS])  # neighbour order differs by state
            rest = rest[_NMR_FIELDS:]
        for key, value in zip(("digital_inputs", "digital_outputs"), rest, strict=False):
            attrs[key] = value
        if len(rest) >= 3:
            attrs["frame_number"] = _int(rest[2])
        alarms: list[Alarm] = []
        if packet_type == EMERGENCY:
            alarms.append(Alarm("emergency", "critical", "tcu", alert_id))
        elif alert_id is not None and alert_id not in _LOCATION_ALERTS:
            code, severity = ALERTS.get(alert_id, (f"ais140_alert_{alert_id:02d}", "warning"))
            alarms.append(Alarm(code, severity, "tcu", alert_id))
        return Reading(
            kind="alarm" if alarms else "telemetry",
            ts_ms=(when - _EPOCH) // _ONE_MS,
            position=position,
            metrics=metrics,
            alarms=tuple(alarms),
            attrs=attrs,
        )


def _is_imei(value: str) -> bool:
    return 14 <= len(value) <= 17 and value.isdigit()


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None  # firmwares send placeholders ("XXX.X") for what they do not measure


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def _hex(value: str) -> int | None:
    try:
        return int(value, 16)
    except ValueError:
        return None


def _signed(value: str, hemisphere: str, negative: str) -> float:
    degrees = float(value)
    return -degrees if hemisphere == negative else degrees


def _login(f: list[str], *, vendor: bool) -> Reading:
    """ARAI login (vendor id, hemisphere letters) or the states' LGN form (neither)."""
    if vendor:
        vehicle, firmware, protocol = f[2], f[4], f[5]
        lat, lon = _signed(f[6], f[7], "S"), _signed(f[8], f[9], "W")
        attrs: dict[str, AttrValue] = {"vendor_id": f[1]}
    else:
        vehicle, firmware, protocol = f[1], f[3], f[4]
        lat, lon = float(f[5]), float(f[6])
        attrs = {}
    attrs.update({"header": f[0], "vehicle_reg": vehicle, "firmware": firmware})
    attrs["protocol"] = protocol
    # The last valid location the unit saved: a position, but not a current one.
    return Reading("login", None, Position(lat, lon, valid=False), attrs=attrs)


def _health(f: list[str]) -> Reading:
    metrics: dict[str, MetricValue] = {
        "battery_level_pct": int(f[4]),
        "memory_used_pct": _number(f[6]),
    }
    attrs: dict[str, AttrValue] = {
        "header": f[0],
        "vendor_id": f[1],
        "firmware": f[2],
        "low_battery_threshold_pct": _int(f[5]),
        "interval_ignition_on_s": _int(f[7]),
        "interval_ignition_off_s": _int(f[8]),
        "digital_io": f[9],
        "analog_io": f[10],
    }
    return Reading("heartbeat", None, metrics=metrics, attrs=attrs)


class Ais140Session:
    """One connection: frames ``$ ... *[hh]``, checks the checksum, names the device.

    A ``$`` with no ``*`` within ``max_frame_bytes`` (or another ``$`` first) is given up as a
    ``bad_frame`` and the scan resumes at the next ``$``; CR and LF between packets are
    separators. Under the standard variant a packet whose ``*`` ends the buffer waits for the
    2 bytes after it, which say whether a checksum follows, so any chunking of a stream yields
    the same events; under ``sum16`` a packet ends at its ``*``.
    """

    __slots__ = ("_closed", "_codec", "_device_id", "_rest", "_skipped", "_sum16")

    def __init__(self, codec: Ais140Codec) -> None:
        self._codec = codec
        self._sum16 = codec.variant is Ais140Variant.SUM16
        self._device_id: str | None = None
        self._rest = b""
        self._skipped = 0
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
        end, limit = len(buf), self._codec.max_frame_bytes
        events: list[Event] = []
        pos = 0
        while pos < end:
            # CR/LF between packets are separators; inside a run of garbage they are garbage,
            # so the count does not depend on where a read ended.
            while pos < end and not self._skipped and buf[pos] in _SEPARATORS:
                pos += 1
            if pos == end:
                break
            if buf[pos : pos + 1] != _START:
                start, found = find_sync(buf, pos, (_START,))
                self._skipped += start - pos
                pos = start
                if not found:
                    break
            if self._skipped:
                events.append(garbage(self._skipped))
                self._skipped = 0
            star = buf.find(_END, pos, pos + limit)
            restart = buf.find(_START, pos + 1, star if star >= 0 else pos + limit)
            if restart >= 0 or (star < 0 and end - pos >= limit):
                skipped = (restart if restart >= 0 else pos + limit) - pos
                detail = f"no '*' before the next '$' or within {limit} bytes"
                events.append(Reject("bad_frame", detail, Action.RESYNC, skipped))
                pos += skipped
                continue
            stop = star + 1 if self._sum16 and star >= 0 else self._stop(buf, star)
            if stop < 0:
                break  # incomplete, or the bytes telling whether a checksum follows are not here
            frame = buf[pos:stop]
            pos = stop
            events.append(self._event(frame))
            if self._closed:
                return events
        self._rest = buf[pos:]
        return events

    @staticmethod
    def _stop(buf: bytes, star: int) -> int:
        """Where a standard packet whose '*' is at ``star`` ends: after its 2-digit checksum,
        or at the '*' when the bytes after it are not hex digits (a device without one); -1
        while those bytes have not arrived (a standard device sends them with the packet)."""
        if star < 0 or star + 2 >= len(buf):
            return -1
        if buf[star + 1] in _HEX and buf[star + 2] in _HEX:
            return star + 3
        return star + 1

    def eof(self) -> list[Event]:
        if self._closed:
            return []
        events: list[Event] = []
        rest = self._rest
        if self._skipped:
            events.append(garbage(self._skipped))
        if rest.startswith(_START) and _END in rest:
            # A last packet ended by '*' with nothing after it: whole.
            star = rest.index(_END)
            events.append(self._event(rest[: star + 1]))
            rest = rest[star + 1 :].lstrip(b"\r\n")
            if rest:
                events.append(garbage(len(rest)))
        elif rest.startswith(_START):
            detail = f"stream ended inside a packet ({len(rest)} bytes)"
            events.append(Reject("truncated", detail, Action.CLOSE, len(rest)))
        self._rest = b""
        self._skipped = 0
        return events

    def _event(self, frame: bytes) -> Event:
        codec = self._codec
        problem = codec.check(frame)
        if problem is not None:
            return Reject("crc_mismatch", problem, Action.RESYNC, len(frame))
        try:
            imei, reading = codec._parse(frame)
        except DecodeError as exc:
            return Frame(self._device_id, frame, b"", (), exc.code, exc.detail)
        if self._device_id is None:
            allowed = codec.allowed_devices
            if allowed is not None and imei not in allowed:
                self._closed = True
                self._rest = b""
                detail = f"device {imei} is not allowed"
                return Reject("device_refused", detail, Action.CLOSE, len(frame))
            self._device_id = imei
            # The first packet names the device, login or not: its reading is kept with it.
            return Login(imei, b"", frame, (reading,))
        return Frame(self._device_id, frame, b"", (reading,))
