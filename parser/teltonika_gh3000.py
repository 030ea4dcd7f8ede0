"""Teltonika Codec 7: the AVL records of the GH3000 family (GH3000 Data Protocol, v1.08).

A record starts with a 4-byte word: priority in bits 31-30, seconds since 2007-01-01 00:00 UTC
in bits 29-0. A global mask says which parts follow (bit 0 GPS element, bits 1-3 the IO groups
of 1-, 2- and 4-byte values); the GPS element opens with its own mask (bit 0 latitude and
longitude as IEEE floats, 1 altitude, 2 angle in 360/256 steps, 3 speed, 4 satellites, 5 LAC and
cell id, 6 signal quality, 7 operator code). IO groups are a count, then (1-byte id, value) pairs.
"""

from __future__ import annotations

import math
import struct

from parser.errors import DecodeError
from parser.records import Alarm, AttrValue, MetricValue, Position, Reading

_EPOCH_2007_S = 1_167_609_600  # 2007-01-01T00:00:00Z
_PANIC_PRIORITY = 2
# GPS element mask bit -> (struct code of its field(s), name(s)).
_GPS_FIELDS: tuple[tuple[int, struct.Struct, tuple[str, ...]], ...] = (
    (0x01, struct.Struct(">ff"), ("lat", "lon")),
    (0x02, struct.Struct(">H"), ("alt_m",)),
    (0x04, struct.Struct(">B"), ("angle",)),
    (0x08, struct.Struct(">B"), ("speed_kmh",)),
    (0x10, struct.Struct(">B"), ("satellites",)),
    (0x20, struct.Struct(">HH"), ("lac", "cell_id")),
    (0x40, struct.Struct(">B"), ("signal_quality",)),
    (0x80, struct.Struct(">I"), ("operator",)),
)
_IO_GROUPS = ((0x02, 1), (0x04, 2), (0x08, 4))  # global mask bit, value size


def decode_codec7(data: bytes, records: int) -> tuple[Reading, ...]:
    """The readings of ``records`` Codec 7 records in ``data`` (between NoD1 and NoD2)."""
    try:
        readings, pos = [], 0
        for _ in range(records):
            reading, pos = _record(data, pos)
            readings.append(reading)
    except (struct.error, IndexError) as exc:
        raise DecodeError("bad_body", f"codec 7 data ends inside a record: {exc}") from None
    if pos != len(data):
        raise DecodeError("bad_body", f"codec 7 records end at {pos} of {len(data)} bytes")
    return tuple(readings)


def _record(data: bytes, pos: int) -> tuple[Reading, int]:
    (word,) = struct.unpack_from(">I", data, pos)
    global_mask = data[pos + 4]
    pos += 5
    priority = word >> 30
    ts_ms = ((word & 0x3FFFFFFF) + _EPOCH_2007_S) * 1000
    fields: dict[str, float] = {}
    if global_mask & 0x01:
        gps_mask = data[pos]
        pos += 1
        for bit, layout, names in _GPS_FIELDS:
            if gps_mask & bit:
                fields.update(zip(names, layout.unpack_from(data, pos), strict=True))
                pos += layout.size
    io: dict[str, int | str] = {}
    for bit, size in _IO_GROUPS:
        if global_mask & bit:
            count = data[pos]
            pos += 1
            for _ in range(count):
                if pos + 1 + size > len(data):
                    raise DecodeError("bad_body", "codec 7 IO group overruns the data")
                io[str(data[pos])] = int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
                pos += 1 + size
    position = None
    if "lat" in fields:
        lat, lon = fields["lat"], fields["lon"]
        # IEEE floats can hold NaN and infinities, which no fix is (and JSON cannot carry).
        if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180):
            raise DecodeError("bad_position", f"codec 7 coordinates out of range: {lat}, {lon}")
        angle = fields.get("angle")
        sats = fields.get("satellites")
        position = Position(
            lat=round(lat, 7),
            lon=round(lon, 7),
            alt_m=fields.get("alt_m"),
            speed_kmh=fields.get("speed_kmh"),
            heading_deg=None if angle is None else angle * 360 / 256,
            satellites=None if sats is None else int(sats),
            valid=sats is None or sats > 0,
        )
    metrics: dict[str, MetricValue] = {}
    if "speed_kmh" in fields:
        metrics["speed_kmh"] = fields["speed_kmh"]
    if "signal_quality" in fields:
        metrics["gsm_signal"] = fields["signal_quality"]
    attrs: dict[str, AttrValue] = {"priority": priority, "global_mask": global_mask}
    for key in ("lac", "cell_id", "operator"):
        if key in fields:
            attrs[key] = int(fields[key])
    if priority == _PANIC_PRIORITY:
        panic = (Alarm("teltonika_panic", "critical", "tcu", None),)
        return Reading("alarm", ts_ms, position, metrics, io, panic, attrs), pos
    return Reading("telemetry", ts_ms, position, metrics, io, (), attrs), pos
