"""Canonical record types: what a codec decodes (:class:`Reading`) and what the streams carry.

Field names and order are a contract with analytics (Firehose → S3 → Glue/Athena): change them
only with a new ``schema`` version. ``config/schema/`` holds the generated JSON Schemas and a test
keeps them current. msgspec Structs are used because they build and encode faster than dicts +
orjson on this machine (``bench/decode.py`` measures both).
"""

from __future__ import annotations

import calendar
import hashlib
import time
from collections.abc import Callable
from typing import Annotated, Literal, get_args

import msgspec

RAW_SCHEMA = "ev.raw/1"
PARSED_SCHEMA = "ev.parsed/1"
ERROR_SCHEMA = "ev.error/1"

Kind = Literal["telemetry", "alarm", "heartbeat", "login", "command_reply"]
KINDS: tuple[str, ...] = get_args(Kind)
# ISO 8601 UTC with milliseconds, e.g. 2019-06-10T10:04:46.000Z (all_timestamps checks it fast:
# keep the two in step)
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
Timestamp = Annotated[
    str,
    msgspec.Meta(pattern=TIMESTAMP_PATTERN, description="UTC, ISO 8601 with milliseconds"),
]

MetricValue = bool | int | float | str | list[float] | None
AttrValue = bool | int | float | str | None


class Position(msgspec.Struct, frozen=True, gc=False):
    """A fix. ``valid`` is the device's own statement that the fix is current."""

    lat: float
    lon: float
    alt_m: float | None = None
    speed_kmh: float | None = None
    heading_deg: float | None = None
    satellites: int | None = None
    valid: bool = True


class Alarm(msgspec.Struct, frozen=True, gc=False):
    code: str
    severity: str
    subsystem: str | None = None
    value: int | float | None = None


class Reading(msgspec.Struct, frozen=True, gc=False):
    """One decoded reading of a frame: the part of a parsed record a codec is responsible for."""

    kind: Kind
    ts_ms: int | None
    position: Position | None = None
    metrics: dict[str, MetricValue] = {}
    io: dict[str, int | str] = {}
    alarms: tuple[Alarm, ...] = ()
    attrs: dict[str, AttrValue] = {}


class RawRecord(msgspec.Struct, frozen=True, gc=False):
    """One per frame, decodable or not; ``payload`` is serialized as base64. ``id`` is a digest
    of device id, codec and payload: a resent frame gets the same id."""

    schema: str
    id: str
    device_id: str | None
    codec: str
    transport: str
    peer: str | None
    received_at: Timestamp
    payload: bytes


class ErrorRecord(msgspec.Struct, frozen=True, gc=False):
    """One per frame that framed but did not decode: why, next to its raw record's id (the raw
    record keeps the frame for a re-parse after a codec fix); ``payload`` is serialized as base64.
    """

    schema: str
    raw_id: str
    device_id: str | None
    codec: str
    reason: str  # the codec's error code (bad_body, bad_field, unknown_type …)
    detail: str | None
    received_at: Timestamp
    payload: bytes


class ParsedRecord(msgspec.Struct, frozen=True, gc=False):
    """One per reading. ``id`` is ``<raw_id>-<index>``, so a replay yields the same ids."""

    schema: str
    id: str
    raw_id: str
    device_id: str | None
    codec: str
    kind: Kind
    ts: Timestamp | None
    received_at: Timestamp
    position: Position | None
    metrics: dict[str, MetricValue]
    io: dict[str, int | str]
    alarms: tuple[Alarm, ...]
    attrs: dict[str, AttrValue]


# "-0", "-1" …: a concatenation costs a third of formatting the id (nearly every frame has one
# reading, and live ingest builds a parsed id per frame).
_INDEXED = 256
_INDEX_SUFFIX = tuple(f"-{index}" for index in range(_INDEXED))


def parsed_records(raw: RawRecord, readings: tuple[Reading, ...]) -> list[ParsedRecord]:
    """The parsed records of one raw record, ids derived from the raw id and reading index."""
    # A plain loop and counter: a list comprehension over enumerate() costs ~0.25 µs more per
    # record (most raw records hold one reading), enumerate() alone ~0.1 µs; replay feels both.
    records = []
    index = 0
    for r in readings:
        records.append(
            ParsedRecord(
                PARSED_SCHEMA,
                raw.id + _INDEX_SUFFIX[index] if index < _INDEXED else f"{raw.id}-{index}",
                raw.id,
                raw.device_id,
                raw.codec,
                r.kind,
                None if r.ts_ms is None else iso_ms(r.ts_ms),
                raw.received_at,
                r.position,
                r.metrics,
                r.io,
                r.alarms,
                r.attrs,
            )
        )
        index += 1  # noqa: SIM113
    return records


_second_cache: dict[int, str] = {}
_MILLIS = tuple(f"{ms:03d}Z" for ms in range(1000))


def iso_ms(ms: int) -> str:
    """``2019-06-10T10:04:46.000Z`` for a Unix time in milliseconds (UTC)."""
    seconds, millis = divmod(ms, 1000)
    prefix = _second_cache.get(seconds)
    if prefix is None:
        # Consecutive records share their second; the cache turns gmtime + format into a lookup.
        if len(_second_cache) > 4096:
            _second_cache.clear()
        t = time.gmtime(seconds)
        prefix = f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}T{t[3]:02d}:{t[4]:02d}:{t[5]:02d}."
        _second_cache[seconds] = prefix
    return prefix + _MILLIS[millis]


_seconds_of_prefix: dict[str, int] = {}


def parse_iso_ms(text: str) -> int:
    """The Unix time in ms of a record timestamp (``iso_ms``'s output; validated on decode)."""
    prefix = text[:19]
    seconds = _seconds_of_prefix.get(prefix)
    if seconds is None:
        # Records of one replayed batch share few seconds: one strptime per second, not per record.
        if len(_seconds_of_prefix) > 4096:
            _seconds_of_prefix.clear()
        seconds = calendar.timegm(time.strptime(prefix, "%Y-%m-%dT%H:%M:%S"))
        _seconds_of_prefix[prefix] = seconds
    return seconds * 1000 + int(text[20:23])


# The pattern's shape with every ASCII digit as 0, and a separator the shape does not contain.
_TIMESTAMP_SHAPE = "0000-00-00T00:00:00.000Z\0"
_DIGITS_TO_ZERO = str.maketrans("123456789", "000000000")


def all_timestamps(values: list[str]) -> bool:
    """True if every value matches ``TIMESTAMP_PATTERN`` with ASCII digits.

    One pass in C over many values, where decoding with the pattern is a regex call per value
    (more than half of a raw record's decode time). False is no verdict: the pattern's ``\\d``
    also takes other decimal digits and its ``$`` a final newline, so check such values one by one.
    """
    joined = "\0".join([*values, ""])
    return joined.translate(_DIGITS_TO_ZERO) == _TIMESTAMP_SHAPE * len(values)


def raw_record_id(device_id: str | None, codec: str, payload: bytes) -> str:
    """The id of the raw record of ``payload`` from ``device_id`` (None: before its login) under
    ``codec``: 32 hex digits of a BLAKE2b digest of the three.

    A device that got no ACK resends the same frame bytes, often on a new connection (so never
    the peer address); content alone makes every copy, and every shipping retry of it, one id
    that consumers deduplicate on (the lake does). Protocols put their sequence numbers and
    timestamps in the frame, so distinct frames differ. Codec and device id are length-prefixed
    (netstrings) so that no two triples hash the same bytes. 128 bits: a collision is
    negligible at any fleet's lifetime volume. Cost (``python -m timeit``, this machine): ~0.6 µs
    for a 60-byte frame, ~1.2 µs for 600 bytes, where the time-ordered counter it replaced took
    ~0.3 µs; BLAKE2b beats hashlib's other digests on frames this small (SHA-256 overtakes it
    only past a few hundred bytes, where a frame holds many readings).
    """
    device = device_id or ""
    text = f"{len(codec)}:{codec}{len(device)}:{device}"
    return hashlib.blake2b(text.encode() + payload, digest_size=16).hexdigest()


to_json: Callable[[RawRecord | ParsedRecord], bytes] = msgspec.json.Encoder().encode
"""The record as one compact JSON document (no trailing newline).

The encoder's own method, not a function around it: a Python call less per record.
"""


def json_schema(record_type: type[msgspec.Struct]) -> dict[str, object]:
    """The published JSON Schema of a record type."""
    return msgspec.json.schema(record_type)
