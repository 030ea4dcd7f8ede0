"""Content of the GT06 family's packets: which blocks each protocol number carries, decoded.

The Concox documents ("GPS Tracker Communication Protocol (GT06)", the GT06N / JM-VL01 / JM-VL03
protocol sheets: "doc") build every packet from a few blocks: a GPS block (date-time, satellites,
latitude, longitude, speed, course/status), an LBS block (MCC, MNC, LAC, cell id; 2G or 4G
sizes), a status block (terminal info, voltage, GSM signal, alarm, language) and per-packet tails.
The table :data:`LAYOUTS` says which blocks a protocol number carries; :class:`PacketDecoder`
reads them as a known prefix and keeps whatever a firmware appends as ``extra`` (hex), so a
frame whose framing and CRC are right is never refused for being longer than the doc says.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from parser.errors import DecodeError
from parser.gt06_blocks import (
    ContentReader,
    Parts,
    alarm_of,
    gps_block,
    gps_flags,
    gps_lbs_blocks,
    lbs_with_length,
    local_ms,
    position_of,
    read_lbs,
    reading_of,
    status_block,
    terminal_info_attrs,
    terminal_info_metrics,
    text_of,
    upload_tail,
)
from parser.records import Alarm, Kind, Position, Reading


class Gt06Protocol(enum.IntEnum):
    """Protocol numbers the family's terminals send (doc section 5 and the model sheets)."""

    LOGIN = 0x01
    GPS = 0x10  # GPS block only
    GPS_LBS_6 = 0x11  # GPS + LBS with 2-byte MNC and 4-byte cell id
    LOCATION = 0x12  # GPS + LBS (doc 5.2)
    STATUS = 0x13  # heartbeat (doc 5.4)
    STRING = 0x15  # reply to a server command, short form
    ALARM = 0x16  # GPS + LBS + status (doc 5.3)
    LBS_EXTEND = 0x18  # date-time, 7 cells, Wi-Fi access points
    LBS_STATUS = 0x19  # LBS + status, no GPS
    GPS_LBS_EXTEND = 0x1E  # GPS + model-specific extension
    STRING_INFO = 0x21  # reply to a server command, 7979 form (JM-VL01 sheet)
    LBS_MULTIPLE_3 = 0x24  # cell list (Wanway S20); GPS + LBS on the SR411 mini (a variant)
    LOCATION_2 = 0x22  # GPS + LBS + ACC, upload mode, re-upload, mileage (JM-VL01 sheet)
    HEARTBEAT = 0x23  # GK310 heartbeat: info, voltage in 0.01 V, GSM, language
    ALARM_2 = 0x26  # as 0x16 (JM-VL01 sheet "alarm data")
    ALARM_3 = 0x27  # as 0x16 plus language and geofence number
    LBS_MULTIPLE = 0x28  # date-time, serving cell and 6 neighbours, language (JM-VL01 sheet)
    LBS_WIFI = 0x2C  # date-time, 7 cells, Wi-Fi access points (JM-VL01 sheet)
    GPS_LBS_4 = 0x2D  # as 0x22
    LBS_MULTIPLE_2 = 0x2E  # as 0x28
    GPS_LBS_5 = 0x31  # as 0x22
    AZ735_GPS = 0x32  # 7979: GPS with a length byte, LBS with a length byte, status
    AZ735_ALARM = 0x33
    X1_GPS = 0x34  # X1: data/alarm word, GPS, terminal info, odometer, LBS with 4-byte cell
    STATUS_2 = 0x36  # Jimi 4G heartbeat: status block then modules
    GPS_LBS_3 = 0x37  # as 0x22
    GPS_LBS_8 = 0x38  # 7979: GPS, upload mode, re-upload, LBS led by its cell type
    MODULAR = 0x70  # 7979: type-length-value modules, GPS in module 0x33
    TIME_REQUEST = 0x8A  # the terminal asks for UTC; answered with the date-time
    INFORMATION = 0x94  # 7979 "information transmission": sub-type, then content
    ALARM_JC100 = 0x95  # date-time (+ GPS on the extended form) and an alarm code
    LOCATION_4G = 0xA0  # GPS + 4G LBS (4-byte LAC, 8-byte cell) + ACC ... (JM-VL03 sheet)
    LBS_MULTIPLE_4G = 0xA1  # as 0x28 with 4G cells (JM-VL03 sheet)
    GPS_LBS_STATUS_4G = 0xA2  # GPS + 4G LBS + status (LW4G); GK310 multi-cell Wi-Fi otherwise
    ALARM_4G = 0xA4  # GPS + LBS led by its length + status (JM-VL03 sheet "alarm")
    LBS_ALARM_4G = 0xA5  # 4G LBS + status, no GPS


class Block(enum.Enum):
    """Building blocks of a packet's content, in wire order."""

    GPS = "gps"  # doc 5.2.1: 18 bytes
    GPS_WITH_LENGTH = "gps_with_length"  # AZ735: length byte before satellites; 0 = no fix
    LBS = "lbs"  # MCC, MNC (2 bytes if MCC bit 15), LAC 2, cell 3
    LBS_6 = "lbs_6"  # MCC, MNC 2, LAC 2, cell 4
    LBS_4G = "lbs_4g"  # MCC, MNC, LAC 4, cell 8
    LBS_CELL4 = "lbs_cell4"  # MCC, MNC (2 bytes if MCC bit 15), LAC 2, cell 4
    IMEI = "imei"  # the terminal id, BCD in 8 bytes as in the login (some clones' 0x12)
    LBS_WITH_LENGTH = "lbs_with_length"  # a length byte (counting itself) leads the block
    STATUS = "status"  # doc 5.4.1: info, voltage level, GSM, alarm, [language]
    UPLOAD = "upload"  # ACC, data upload mode, GPS re-upload, [mileage 4]


@dataclass(frozen=True, slots=True)
class Layout:
    kind: Kind
    blocks: tuple[Block, ...]


_LOC: Kind = "telemetry"
_ALM: Kind = "alarm"
# Packets decoded by the block reader; the rest have their own function in _SPECIAL.
LAYOUTS: dict[int, Layout] = {
    Gt06Protocol.GPS: Layout(_LOC, (Block.GPS,)),
    Gt06Protocol.GPS_LBS_6: Layout(_LOC, (Block.GPS, Block.LBS_6)),
    Gt06Protocol.LOCATION: Layout(_LOC, (Block.GPS, Block.LBS)),
    Gt06Protocol.GPS_LBS_EXTEND: Layout(_LOC, (Block.GPS,)),
    Gt06Protocol.LOCATION_2: Layout(_LOC, (Block.GPS, Block.LBS, Block.UPLOAD)),
    Gt06Protocol.GPS_LBS_4: Layout(_LOC, (Block.GPS, Block.LBS, Block.UPLOAD)),
    Gt06Protocol.GPS_LBS_5: Layout(_LOC, (Block.GPS, Block.LBS, Block.UPLOAD)),
    Gt06Protocol.GPS_LBS_3: Layout(_LOC, (Block.GPS, Block.LBS, Block.UPLOAD)),
    Gt06Protocol.LOCATION_4G: Layout(_LOC, (Block.GPS, Block.LBS_4G, Block.UPLOAD)),
    Gt06Protocol.ALARM: Layout(_ALM, (Block.GPS, Block.LBS_WITH_LENGTH, Block.STATUS)),
    Gt06Protocol.ALARM_2: Layout(_ALM, (Block.GPS, Block.LBS_WITH_LENGTH, Block.STATUS)),
    Gt06Protocol.ALARM_3: Layout(_ALM, (Block.GPS, Block.LBS_WITH_LENGTH, Block.STATUS)),
    Gt06Protocol.ALARM_4G: Layout(_ALM, (Block.GPS, Block.LBS_WITH_LENGTH, Block.STATUS)),
    Gt06Protocol.LBS_STATUS: Layout(_ALM, (Block.LBS, Block.STATUS)),
    Gt06Protocol.LBS_ALARM_4G: Layout(_ALM, (Block.LBS_4G, Block.STATUS)),
}

# Answered with the short echo ``7878 05 <protocol> <serial> <crc> 0d0a``: login and heartbeats
# must be, or the terminal reconnects (doc 5.1, 5.4); alarms are (doc 5.3.2: not enforced by the
# terminal, but the JM sheets resend an alarm until it is answered). Location packets get no reply
# (doc 5.2 defines none), nor do command replies and information packets.
SHORT_REPLY = frozenset(
    {
        Gt06Protocol.LOGIN,
        Gt06Protocol.STATUS,
        Gt06Protocol.ALARM,
        Gt06Protocol.LBS_STATUS,
        Gt06Protocol.HEARTBEAT,
        Gt06Protocol.ALARM_2,
        Gt06Protocol.ALARM_3,
        Gt06Protocol.STATUS_2,
        Gt06Protocol.MODULAR,
        Gt06Protocol.ALARM_JC100,
        Gt06Protocol.GPS_LBS_STATUS_4G,
        Gt06Protocol.ALARM_4G,
        Gt06Protocol.LBS_ALARM_4G,
    }
)
# The AZ735 sheet answers its 7979 packets in the 7979 form.
LONG_REPLY = frozenset({Gt06Protocol.AZ735_GPS, Gt06Protocol.AZ735_ALARM})
# Protocols PacketDecoder.decode compares with before its table lookups (heartbeats are frequent):
# module constants, as reading an Enum member off its class runs Python code in 3.11.
_STATUS = Gt06Protocol.STATUS
_STATUS_2 = Gt06Protocol.STATUS_2
_GPS_LBS_STATUS_4G = Gt06Protocol.GPS_LBS_STATUS_4G

# JC100 alarm packet 0x95 event byte -> (code, severity).
JC100_ALARMS: dict[int, tuple[str, str]] = {
    0x01: ("sos", "critical"),
    0x0E: ("low_power", "warning"),
    0x80: ("vibration", "warning"),
    0x87: ("overspeed", "warning"),
    0x88: ("power_cut", "critical"),
    0x90: ("harsh_acceleration", "warning"),
    0x91: ("harsh_braking", "warning"),
    0x92: ("harsh_cornering", "warning"),
    0x93: ("collision", "critical"),
}

# "Current position!Lat:N54.739332,Lon:E25.273270,Course:126.53,Speed:0.0000,DateTime:2017-05-26
#  10:27:47": the text reply to a position query (GT06 POSITION# command).
_POSITION_TEXT = re.compile(
    r"Lat:([NS])([\d.]+),Lon:([EW])([\d.]+),Course:([\d.]+),Speed:([\d.]+),"
    r"DateTime:(\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d)"
)
# Multi-cell Wi-Fi 0xA2 (GK310) holds at least date-time 6 + MCC/MNC 3 + 7 cells of 13 + TA 1.
_MULTI_CELL_4G_MIN_BYTES = 101


@dataclass(frozen=True, slots=True)
class MultiCell:
    """A cell-list packet: date-time, MCC, MNC, ``cells`` x (LAC, cell id, signal), timing
    advance, then Wi-Fi access points (count, then MAC 6 + signal 1 each) and/or language 2."""

    lac_bytes: int
    cell_bytes: int
    wifi: bool
    language: bool
    cells: int = 7


MULTI_CELL: dict[int, MultiCell] = {
    Gt06Protocol.LBS_EXTEND: MultiCell(2, 3, wifi=True, language=False),
    Gt06Protocol.LBS_MULTIPLE: MultiCell(2, 3, wifi=False, language=True),
    Gt06Protocol.LBS_MULTIPLE_2: MultiCell(2, 3, wifi=False, language=True),
    Gt06Protocol.LBS_WIFI: MultiCell(2, 3, wifi=True, language=False),
    Gt06Protocol.LBS_MULTIPLE_4G: MultiCell(4, 8, wifi=False, language=True),
    Gt06Protocol.GPS_LBS_STATUS_4G: MultiCell(4, 8, wifi=True, language=False),
}


class PacketDecoder:
    """Decodes the content of one GT06 packet (the bytes after the protocol number, up to the
    serial). ``zone`` is the device clock's zone; ``variant`` names a model family whose
    packets differ from the doc (see :data:`VARIANTS`)."""

    def __init__(self, zone: tzinfo, variant: str = "standard") -> None:
        model = VARIANTS.get(variant)
        if model is None:
            known = ", ".join(sorted(VARIANTS))
            raise ValueError(f"unknown gt06 variant {variant!r}; known: {known}")
        self._zone = zone
        self._heartbeat = model.heartbeat
        # Each layout's block readers looked up once: hashing an Enum member runs Python code.
        self._layouts = {
            protocol: (layout.kind, _readers(layout))
            for protocol, layout in {**LAYOUTS, **model.layouts}.items()
        }

    def decode(self, protocol: int, content: bytes) -> tuple[Reading, ...]:
        reader = ContentReader(content, protocol)
        try:
            layout = self._layouts.get(protocol)
            if layout is not None:
                kind, readers = layout
                parts = Parts()
                for read in readers:
                    read(self, reader, parts)
                return (reading_of(kind, parts, reader),)
            if protocol == _STATUS:
                return (self._heartbeat(self, reader),)
            if protocol == _STATUS_2:
                # Jimi 4G: the status block, then language and modules (kept as extra).
                return (_standard_heartbeat(self, reader),)
            if protocol == _GPS_LBS_STATUS_4G and len(content) < _MULTI_CELL_4G_MIN_BYTES:
                return (self._lw4g(reader, Layout(_ALM, (Block.GPS, Block.LBS_4G))),)
            multi = MULTI_CELL.get(protocol)
            if multi is not None:
                return (self._multi_cell(reader, multi),)
            special = _SPECIAL.get(protocol)
            if special is not None:
                return special(self, reader)
        except ValueError as exc:  # an impossible date-time
            raise DecodeError("bad_body", f"protocol 0x{protocol:02x}: {exc}") from exc
        raise DecodeError(f"unknown_type_0x{protocol:02x}", f"protocol 0x{protocol:02x}")

    def _gps(self, reader: ContentReader, parts: Parts) -> None:
        gps_block(reader, parts, self._zone)

    def _gps_lbs(self, reader: ContentReader, parts: Parts) -> None:
        gps_lbs_blocks(reader, parts, self._zone)

    def _gps_with_length(self, reader: ContentReader, parts: Parts) -> None:
        """AZ735: date-time, then a length byte; 0 means no GPS fields follow."""
        yy, mo, dd, hh, mi, ss = reader.take(6, "date-time")
        parts.ts_ms = self._time(yy, mo, dd, hh, mi, ss)
        if reader.int(1, "GPS length"):
            info, lat_raw, lon_raw, speed, cs = struct.unpack(">BIIBH", reader.take(12, "GPS"))
            parts.position = position_of(info & 0x0F, lat_raw, lon_raw, speed, cs)
            gps_flags(parts, cs, speed)

    def _time(self, yy: int, mo: int, dd: int, hh: int, mi: int, ss: int) -> int:
        return local_ms(self._zone, yy, mo, dd, hh, mi, ss)

    # --- packets with their own shape --------------------------------------------------------

    def _lw4g(self, reader: ContentReader, layout: Layout) -> Reading:
        """0xA2 of the LW4G: GPS, 4G LBS, network indicator, status info, power in 0.01 V,
        battery level, GSM signal, alarm, language (then odometer, hours, terminal id)."""
        parts = Parts()
        for read in _readers(layout):
            read(self, reader, parts)
        parts.attrs["network"] = reader.int(1, "network indicator")
        info = reader.int(1, "terminal info")
        parts.metrics.update(terminal_info_metrics(info))
        parts.attrs.update(terminal_info_attrs(info))
        parts.metrics["external_voltage_v"] = reader.int(2, "power") / 100
        parts.metrics["battery_level"] = reader.int(1, "battery level")
        parts.metrics["gsm_signal"] = reader.int(1, "GSM signal")
        alarm = reader.int(1, "alarm")
        parts.attrs["alarm"] = alarm
        parts.attrs["language"] = reader.int(1, "language")
        parts.alarms = (alarm_of(alarm),) if alarm else ()
        return reading_of(_ALM, parts, reader)

    def _multi_cell(self, reader: ContentReader, spec: MultiCell) -> Reading:
        """Cell lists (and Wi-Fi) for the server to locate the terminal: no fix of its own.
        The first cell is the serving one; empty slots (LAC 0) are left out."""
        parts = Parts()
        yy, mo, dd, hh, mi, ss = reader.take(6, "date-time")
        parts.ts_ms = local_ms(self._zone, yy, mo, dd, hh, mi, ss)
        mcc = reader.int(2, "MCC")
        mnc = reader.int(2 if mcc & 0x8000 else 1, "MNC")
        cells = []
        for _ in range(spec.cells):
            lac = reader.int(spec.lac_bytes, "LAC")
            cell = reader.int(spec.cell_bytes, "cell id")
            signal = reader.int(1, "cell signal")
            if lac:
                cells.append((lac, cell, signal))
        parts.attrs.update({"mcc": mcc & 0x7FFF, "mnc": mnc})
        if cells:
            parts.attrs.update({"lac": cells[0][0], "cell_id": cells[0][1]})
            parts.attrs["cells"] = ";".join(f"{lac}:{cell}:{sig}" for lac, cell, sig in cells)
        parts.attrs["timing_advance"] = reader.int(1, "timing advance")
        if spec.wifi:
            points = [reader.take(7, "Wi-Fi access point") for _ in range(reader.int(1, "Wi-Fi"))]
            parts.attrs["wifi"] = ";".join(f"{p[:6].hex(':')}:{p[6]}" for p in points)
        if spec.language and reader.left >= 2:
            parts.attrs["language"] = reader.int(2, "language")
        return reading_of(_LOC, parts, reader)

    def _gps_lbs_8(self, reader: ContentReader) -> tuple[Reading, ...]:
        """0x38: GPS block, data upload mode, re-upload, then an LBS block led by its cell type
        (3 and up: 4G, with a 4-byte LAC, 8-byte cell id and 2-byte signal; else 2G sizes and
        a 1-byte signal)."""
        parts = Parts()
        self._gps(reader, parts)
        parts.attrs["upload_mode"] = reader.int(1, "upload mode")
        parts.attrs["reupload"] = reader.int(1, "re-upload") != 0
        cell_type = reader.int(1, "cell type")
        four_g = cell_type >= 3
        read_lbs(reader, parts, lac_bytes=4 if four_g else 2, cell_bytes=8 if four_g else 3)
        parts.attrs["cell_type"] = cell_type
        parts.metrics["gsm_signal"] = reader.int(2 if four_g else 1, "cell signal")
        return (reading_of(_LOC, parts, reader),)

    def _command_text(self, parts: Parts, text: str) -> None:
        """A command reply's text; "Current position!" replies carry a fix (GT06 POSITION#)."""
        parts.attrs["text"] = text
        match = _POSITION_TEXT.search(text)
        if match is None:
            return
        ns, lat, ew, lon, course, speed, when = match.groups()
        stamp = datetime.strptime(" ".join(when.split()), "%Y-%m-%d %H:%M:%S")
        parts.ts_ms = local_ms(
            self._zone,
            stamp.year - 2000,
            stamp.month,
            stamp.day,
            stamp.hour,
            stamp.minute,
            stamp.second,
        )
        parts.position = Position(
            lat=-float(lat) if ns == "S" else float(lat),
            lon=-float(lon) if ew == "W" else float(lon),
            speed_kmh=float(speed),
            heading_deg=float(course),
        )

    def _alarm_jc100(self, reader: ContentReader) -> tuple[Reading, ...]:
        """0x95: date-time and an event (7 bytes), or a GPS block without satellites and speed
        before the event (extended, 17 bytes or more)."""
        parts = Parts()
        if reader.left >= 17:
            yy, mo, dd, hh, mi, ss, lat_raw, lon_raw, cs = struct.unpack(
                ">6BIIH", reader.take(16, "GPS block")
            )
            parts.position = position_of(None, lat_raw, lon_raw, None, cs)
            gps_flags(parts, cs, None)
        else:
            yy, mo, dd, hh, mi, ss = reader.take(6, "date-time")
        parts.ts_ms = self._time(yy, mo, dd, hh, mi, ss)
        event = reader.int(1, "event")
        parts.attrs["event"] = event
        code, severity = JC100_ALARMS.get(event, (f"gt06_event_0x{event:02x}", "warning"))
        if event == 0x01 and parts.position is None:
            # The short form's 0x01 is a generic alarm, the extended form's an SOS (JC100 sheet).
            code, severity = "general", "warning"
        parts.alarms = (Alarm(code, severity, "tcu", event),)
        return (reading_of(_ALM, parts, reader),)

    def _az735(self, reader: ContentReader) -> tuple[Reading, ...]:
        """0x32/0x33 (7979): GPS with length, LBS with length and signal, extra cells, Wi-Fi,
        status byte, reserved extension."""
        parts = Parts()
        self._gps_with_length(reader, parts)
        lbs_length = reader.int(1, "LBS length")
        if lbs_length:
            lbs = ContentReader(reader.take(lbs_length - 1, "LBS block"), reader.protocol)
            read_lbs(lbs, parts, lac_bytes=2, cell_bytes=3)
            parts.metrics["gsm_signal"] = reader.int(1, "GSM signal")
        reader.take(reader.int(1, "cell list length"), "cell list")
        reader.take(reader.int(1, "Wi-Fi list length"), "Wi-Fi list")
        status = reader.int(1, "status")
        parts.attrs["status"] = status
        kind: Kind = _LOC
        if reader.protocol == Gt06Protocol.AZ735_ALARM:
            kind = _ALM
            parts.alarms = (Alarm(f"az735_0x{status:02x}", "warning", "tcu", status),)
        reader.take(reader.int(1, "extension length"), "extension")
        return (reading_of(kind, parts, reader),)

    def _x1(self, reader: ContentReader) -> tuple[Reading, ...]:
        """0x34 (X1): data/alarm word, GPS block, terminal info, odometer, LBS with a 4-byte
        cell id, driver id, battery and power in 0.01 V."""
        parts = Parts()
        parts.attrs["data_alarm"] = reader.int(4, "data and alarm")
        self._gps(reader, parts)
        parts.attrs["terminal_info"] = reader.int(2, "terminal info")
        parts.metrics["odometer_m"] = reader.int(4, "odometer")
        mcc, mnc, lac, cell = struct.unpack(">HBHI", reader.take(9, "LBS block"))
        parts.attrs.update({"mcc": mcc, "mnc": mnc, "lac": lac, "cell_id": cell})
        if reader.left >= 8:
            parts.attrs["driver_id"] = reader.int(4, "driver id")
            parts.metrics["battery_voltage_v"] = reader.int(2, "battery") / 100
            parts.metrics["external_voltage_v"] = reader.int(2, "power") / 100
        return (reading_of(_LOC, parts, reader),)

    def _modular(self, reader: ContentReader) -> tuple[Reading, ...]:
        """0x70 (7979): modules of type 2, length 2, value; module 0x33 is a fix (UTC seconds,
        satellites, altitude, latitude, longitude, speed, course/status)."""
        parts = Parts()
        while reader.left >= 4:
            if int.from_bytes(reader.data[reader.at + 2 : reader.at + 4], "big") > reader.left - 4:
                break  # not a whole module: appended bytes, kept as extra
            module, length = reader.int(2, "module type"), reader.int(2, "module length")
            value = ContentReader(reader.take(length, f"module 0x{module:04x}"), reader.protocol)
            if module == 0x33 and length >= 18:
                seconds, sats, alt = struct.unpack(">IBh", value.take(7, "fix"))
                lat_raw, lon_raw, speed, cs = struct.unpack(">IIBH", value.take(11, "fix"))
                parts.ts_ms = seconds * 1000
                position = position_of(sats, lat_raw, lon_raw, speed, cs)
                parts.position = Position(
                    position.lat,
                    position.lon,
                    alt,
                    position.speed_kmh,
                    position.heading_deg,
                    position.satellites,
                    position.valid,
                )
                gps_flags(parts, cs, speed)
            elif module == 0x18 and length == 2:
                parts.metrics["battery_voltage_v"] = value.int(2, "battery") / 100
            else:
                parts.attrs[f"module_0x{module:04x}"] = value.rest().hex()
        return (reading_of(_LOC, parts, reader),)

    def _heartbeat_gk310(self, reader: ContentReader) -> tuple[Reading, ...]:
        """0x23 (GK310): terminal info, voltage in 0.01 V, GSM signal, language."""
        parts = Parts()
        info = reader.int(1, "terminal info")
        parts.metrics.update(terminal_info_metrics(info))
        parts.attrs.update(terminal_info_attrs(info))
        parts.metrics["battery_voltage_v"] = reader.int(2, "voltage") / 100
        parts.metrics["gsm_signal"] = reader.int(1, "GSM signal")
        return (reading_of("heartbeat", parts, reader),)

    def _information(self, reader: ContentReader) -> tuple[Reading, ...]:
        """0x94: a sub-type byte then its content (external voltage, status sync, door, ICCID)."""
        parts = Parts()
        sub = reader.int(1, "information type")
        parts.attrs["information_type"] = sub
        if sub == 0x00 and reader.left >= 2:
            parts.metrics["external_voltage_v"] = reader.int(2, "external voltage") / 100
        elif sub == 0x04:
            parts.attrs["text"] = reader.rest().decode("ascii", "replace")
        elif sub == 0x05 and reader.left:
            flags = reader.int(1, "door status")
            parts.metrics["door_open"] = bool(flags & 0x01)
        elif sub == 0x0A and reader.left >= 26:
            parts.attrs["imei"] = reader.take(8, "IMEI").hex()[1:]
            parts.attrs["imsi"] = reader.take(8, "IMSI").hex()
            parts.attrs["iccid"] = reader.take(10, "ICCID").hex()
        return (reading_of(_LOC, parts, reader),)

    def _string(self, reader: ContentReader) -> tuple[Reading, ...]:
        """0x15: command length, server flag 4, the reply text (command length - 4), language."""
        parts = Parts()
        length = reader.int(1, "command length")
        if length >= 4:
            parts.attrs["server_flag"] = reader.int(4, "server flag")
            self._command_text(parts, text_of(reader.take(length - 4, "command text")))
        return (reading_of("command_reply", parts, reader),)

    def _string_info(self, reader: ContentReader) -> tuple[Reading, ...]:
        """0x21 (7979): server flag 4, encoding (1 = ASCII, else UTF-16BE), the reply text."""
        parts = Parts()
        parts.attrs["server_flag"] = reader.int(4, "server flag")
        ascii_text = reader.int(1, "encoding") == 1
        body = reader.rest()
        self._command_text(
            parts, text_of(body) if ascii_text else body.decode("utf-16-be", "replace")
        )
        return (reading_of("command_reply", parts, reader),)

    def _time_request(self, reader: ContentReader) -> tuple[Reading, ...]:
        """0x8A carries nothing to record; the session answers it with the time."""
        return ()


def _standard_heartbeat(decoder: PacketDecoder, reader: ContentReader) -> Reading:
    """0x13 (doc 5.4.1): the status block; what a firmware appends is kept."""
    parts = Parts()
    status_block(reader, parts)
    # A heartbeat reports the alarm byte as state, not as a new alarm.
    parts.alarms = ()
    return reading_of("heartbeat", parts, reader)


def _voltage_heartbeat(decoder: PacketDecoder, reader: ContentReader) -> Reading:
    """0x13 of models that send the supply in 0.01 V where the voltage level is (GT06 "R11"
    family): terminal info, voltage 2, GSM signal, alarm, language."""
    parts = Parts()
    info = reader.int(1, "terminal info")
    parts.metrics.update(terminal_info_metrics(info))
    parts.attrs.update(terminal_info_attrs(info))
    parts.metrics["external_voltage_v"] = reader.int(2, "voltage") / 100
    parts.metrics["gsm_signal"] = reader.int(1, "GSM signal")
    if reader.left:
        parts.attrs["alarm"] = reader.int(1, "alarm")
    if reader.left:
        parts.attrs["language"] = reader.int(1, "language")
    return reading_of("heartbeat", parts, reader)


@dataclass(frozen=True, slots=True)
class Variant:
    """A model family whose packets differ from the doc: how 0x13 is read, and layouts that
    replace the standard ones for some protocol numbers."""

    heartbeat: Callable[[PacketDecoder, ContentReader], Reading] = _standard_heartbeat
    layouts: dict[int, Layout] = field(default_factory=dict)


# Chosen per listener (``variant``), as the time zone is.
VARIANTS: dict[str, Variant] = {
    "standard": Variant(),
    # The supply voltage in 0.01 V where the doc has the voltage level (GT06 "R11" family).
    "voltage_heartbeat": Variant(_voltage_heartbeat),
    # Clones whose 0x12 carries the terminal id before the GPS block.
    "imei_location": Variant(
        layouts={Gt06Protocol.LOCATION: Layout(_LOC, (Block.IMEI, Block.GPS, Block.LBS))}
    ),
    # TRX16i: 0x36 is a location (GPS, LBS with a 4-byte cell id, then RFID data kept).
    "trx16i": Variant(layouts={Gt06Protocol.STATUS_2: Layout(_LOC, (Block.GPS, Block.LBS_CELL4))}),
    # SR411 mini: 0x24 is GPS and LBS (then ignition, power, battery, kept).
    "sr411_mini": Variant(
        layouts={Gt06Protocol.LBS_MULTIPLE_3: Layout(_LOC, (Block.GPS, Block.LBS))}
    ),
}

BlockReader = Callable[[PacketDecoder, ContentReader, Parts], None]
_BLOCK_READERS: dict[Block, BlockReader] = {
    Block.GPS: PacketDecoder._gps,
    Block.GPS_WITH_LENGTH: PacketDecoder._gps_with_length,
    Block.LBS: lambda _, reader, parts: read_lbs(reader, parts, lac_bytes=2, cell_bytes=3),
    Block.LBS_6: lambda _, reader, parts: read_lbs(
        reader, parts, lac_bytes=2, cell_bytes=4, mnc2=True
    ),
    Block.LBS_4G: lambda _, reader, parts: read_lbs(reader, parts, lac_bytes=4, cell_bytes=8),
    Block.LBS_CELL4: lambda _, reader, parts: read_lbs(reader, parts, lac_bytes=2, cell_bytes=4),
    Block.IMEI: lambda _, reader, parts: parts.attrs.update(imei=reader.take(8, "IMEI").hex()[1:]),
    Block.LBS_WITH_LENGTH: lambda _, reader, parts: lbs_with_length(reader, parts),
    Block.STATUS: lambda _, reader, parts: status_block(reader, parts),
    Block.UPLOAD: lambda _, reader, parts: upload_tail(reader, parts),
}

_SPECIAL: dict[int, Callable[[PacketDecoder, ContentReader], tuple[Reading, ...]]] = {
    Gt06Protocol.STRING: PacketDecoder._string,
    Gt06Protocol.STRING_INFO: PacketDecoder._string_info,
    Gt06Protocol.HEARTBEAT: PacketDecoder._heartbeat_gk310,
    Gt06Protocol.AZ735_GPS: PacketDecoder._az735,
    Gt06Protocol.AZ735_ALARM: PacketDecoder._az735,
    Gt06Protocol.X1_GPS: PacketDecoder._x1,
    Gt06Protocol.MODULAR: PacketDecoder._modular,
    Gt06Protocol.TIME_REQUEST: PacketDecoder._time_request,
    Gt06Protocol.INFORMATION: PacketDecoder._information,
    Gt06Protocol.ALARM_JC100: PacketDecoder._alarm_jc100,
    Gt06Protocol.GPS_LBS_8: PacketDecoder._gps_lbs_8,
}


def _readers(layout: Layout) -> tuple[BlockReader, ...]:
    readers: list[BlockReader] = []
    blocks = list(layout.blocks)
    while blocks:
        if blocks[:2] == [Block.GPS, Block.LBS]:
            # The pair most location packets are made of, read as one.
            readers.append(PacketDecoder._gps_lbs)
            del blocks[:2]
        else:
            readers.append(_BLOCK_READERS[blocks.pop(0)])
    return tuple(readers)
