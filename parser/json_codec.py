"""The ``json`` codec: one JSON document per message, mapped to readings by a field mapping.

For devices that publish JSON over MQTT instead of a binary frame. A message is one frame: the
document is an object (one reading) or an array of objects (one reading each). A small mapping
says where each canonical field sits in the object, as dotted paths (``gps.lat``); the default
mapping reads the canonical names themselves, so ``{"ts": 1718000000000, "lat": 52.5, "lon":
13.4, "metrics": {"soc_pct": 81}}`` needs no configuration. ``decode`` is pure: replaying a raw
record with the same mapping gives the same readings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import msgspec

from parser.codec import CodecOptions
from parser.errors import DecodeError
from parser.events import Action, Event, Frame, Reject
from parser.records import KINDS, Kind, MetricValue, Position, Reading

DEFAULT_MAX_FRAME_BYTES = 64 * 1024
# Below this a numeric timestamp is read as seconds, above it as milliseconds: 1e11 s is the
# year 5138, 1e11 ms is March 1973 — no device reports either.
_SECONDS_BELOW = 100_000_000_000
# Timestamps a record can carry run from the epoch (where the binary codecs' unsigned fields
# start) to the end of 9999 (``iso_ms`` writes a four-digit year), in ms.
_TS_MS_END = 253_402_300_800_000


@dataclass(frozen=True, slots=True)
class JsonFields:
    """Where each canonical field is in a document: dotted paths; ``None`` skips the field."""

    ts: str | None = "ts"
    kind: str | None = "kind"
    lat: str | None = "lat"
    lon: str | None = "lon"
    alt_m: str | None = "alt_m"
    speed_kmh: str | None = "speed_kmh"
    heading_deg: str | None = "heading_deg"
    satellites: str | None = "satellites"
    # An object whose scalar members are all metrics, under their own names …
    metrics_object: str | None = "metrics"
    # … and/or metrics picked one by one: (metric name, path).
    metrics: tuple[tuple[str, str], ...] = ()


class JsonCodec:
    """Stateless apart from its mapping; one instance serves every connection of a listener."""

    transports = frozenset({"mqtt"})

    def __init__(
        self, options: CodecOptions, fields: JsonFields | None = None, name: str = "json"
    ) -> None:
        self.name = name
        self.fields = fields or JsonFields()
        self.max_frame_bytes = options.max_frame_bytes or DEFAULT_MAX_FRAME_BYTES

    def session(self) -> JsonSession:
        return JsonSession(self)

    def decode(self, payload: bytes) -> tuple[Reading, ...]:
        try:
            document = msgspec.json.decode(payload)
        except msgspec.DecodeError as exc:
            raise DecodeError("bad_json", str(exc)) from None
        items = document if isinstance(document, list) else [document]
        if not items or not all(isinstance(item, dict) for item in items):
            raise DecodeError("bad_json", "expected an object or a non-empty array of objects")
        return tuple(self._reading(item) for item in items)

    def _reading(self, doc: dict[str, Any]) -> Reading:
        f = self.fields
        kind = _get(doc, f.kind)
        if kind is None:
            kind = "telemetry"
        elif kind not in KINDS:
            raise DecodeError("bad_field", f"{f.kind}: kind must be one of {', '.join(KINDS)}")
        metrics: dict[str, MetricValue] = {}
        if f.metrics_object is not None:
            block = _get(doc, f.metrics_object)
            if isinstance(block, dict):
                metrics.update((k, v) for k, v in block.items() if _scalar(v))
        for name, path in f.metrics:
            value = _get(doc, path)
            if value is not None:
                if not _scalar(value):
                    raise DecodeError("bad_field", f"{path}: metric {name} is not a scalar")
                metrics[name] = value
        ts_ms = _timestamp(_get(doc, f.ts), f.ts)
        return Reading(cast(Kind, kind), ts_ms, self._position(doc), metrics)

    def _position(self, doc: dict[str, Any]) -> Position | None:
        f = self.fields
        lat, lon = _number(doc, f.lat), _number(doc, f.lon)
        if lat is None or lon is None:
            return None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise DecodeError("bad_field", f"position {lat}, {lon} is off the globe")
        satellites = _number(doc, f.satellites)
        return Position(
            lat,
            lon,
            _number(doc, f.alt_m),
            _number(doc, f.speed_kmh),
            _number(doc, f.heading_deg),
            None if satellites is None else int(satellites),
        )


class JsonSession:
    """One message = one frame: bytes are collected and the frame is cut at ``eof``."""

    __slots__ = ("_chunks", "_codec", "_size")

    def __init__(self, codec: JsonCodec) -> None:
        self._codec = codec
        self._chunks: list[bytes] = []
        self._size = 0

    @property
    def device_id(self) -> str | None:
        return None  # the transport knows the device; a JSON message does not log in

    @property
    def buffered_bytes(self) -> int:
        return self._size

    def feed(self, data: bytes) -> list[Event]:
        if self._size + len(data) > self._codec.max_frame_bytes:
            size, self._chunks, self._size = self._size + len(data), [], 0
            return [Reject("oversize", f"{size} bytes in one document", Action.CLOSE, size)]
        self._chunks.append(data)
        self._size += len(data)
        return []

    def eof(self) -> list[Event]:
        payload = b"".join(self._chunks)
        self._chunks, self._size = [], 0
        if not payload:
            return []
        try:
            readings = self._codec.decode(payload)
        except DecodeError as exc:
            return [Frame(None, payload, b"", (), exc.code, exc.detail)]
        return [Frame(None, payload, b"", readings)]


def _get(doc: dict[str, Any], path: str | None) -> Any:
    if path is None:
        return None
    value: Any = doc
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _number(doc: dict[str, Any], path: str | None) -> float | None:
    value = _get(doc, path)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError("bad_field", f"{path}: expected a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # JSON integers are unbounded; a float is not
        raise DecodeError("bad_field", f"{path}: {value} is out of range") from None


def _timestamp(value: object, path: str | None) -> int | None:
    """Milliseconds since the epoch from seconds, milliseconds or an ISO 8601 string."""
    if value is None:
        return None
    # int | float, not float: a JSON integer can be too large for a float (refused below), and
    # mypyc checks that a float variable holds a float object.
    ms: int | float
    if isinstance(value, int | float) and not isinstance(value, bool):
        ms = value * 1000 if value < _SECONDS_BELOW else value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise DecodeError("bad_field", f"{path}: {value!r} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise DecodeError("bad_field", f"{path}: {value!r} has no time zone")
        ms = parsed.timestamp() * 1000
    else:
        raise DecodeError("bad_field", f"{path}: expected a time, got {value!r}")
    # Compared before int(): -1e308 s is -inf ms, and 1e20 ms is past what iso_ms can write.
    if not 0 <= ms < _TS_MS_END:
        raise DecodeError("bad_field", f"{path}: {value!r} is not between 1970 and 9999")
    return int(ms)
