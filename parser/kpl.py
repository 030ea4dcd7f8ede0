"""KPL aggregated records: many user records packed into one Kinesis record (sans-I/O).

Format per awslabs/amazon-kinesis-producer ``aggregation-format.md``: the 4-byte magic
``F3 89 9A C2``, the proto2 message below, then the 16-byte MD5 of the message bytes::

    message AggregatedRecord {
      repeated string partition_key_table = 1; repeated string explicit_hash_key_table = 2;
      repeated Record records = 3; }
    message Record {
      required uint64 partition_key_index = 1; optional uint64 explicit_hash_key_index = 2;
      required bytes data = 3; repeated Tag tags = 4; }

The protobuf encoding is written by hand: only varints and length-delimited fields occur, and it
runs at under half the CPU per user record of ``aws-kinesis-agg`` on the ``protobuf`` runtime
(``bench/kinesis_agg.py`` measures both; MD5 of the body is half of what remains). Fields are
emitted in field-number order, as protobuf serializers do, so the output is byte-identical to
``aws-kinesis-agg``'s, and stock deaggregators (KCL, ``aws-kinesis-agg``) read it.
"""

from __future__ import annotations

import hashlib

from parser.errors import DecodeError

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_BYTES = 16
_FIXED_BYTES = len(MAGIC) + DIGEST_BYTES

# Service limits (Kinesis API reference, PutRecords): a record's data plus its partition key is at
# most 1 MiB; keys are 1 to 256 Unicode characters.
MAX_RECORD_BYTES = 1024 * 1024
MAX_PARTITION_KEY_CHARS = 256
# The KPL's AggregationMaxSize default (default_config.properties).
KPL_DEFAULT_AGGREGATE_BYTES = 51200

# Billing: "A PUT Payload Unit is counted in 25KB payload chunks ... a 5KB record contains one PUT
# Payload Unit, a 45KB record contains two ..., and a 1MB record contains 40" (Kinesis pricing
# page). Only decimal units make "1 MB = 40" exact (1,000,000 / 25,000); 25 KiB chunks would
# bill 1 MiB as 41. The decimal reading is also the one that never under-counts.
PUT_PAYLOAD_UNIT_BYTES = 25_000

# ExplicitHashKey is a decimal string of a 128-bit value (API pattern ``0|([1-9]\d{0,38})``).
_HASH_KEY_LIMIT = 1 << 128

# Field keys, (field_number << 3) | wire_type.
_PK_ENTRY = b"\x0a"  # AggregatedRecord.partition_key_table, length-delimited
_EHK_ENTRY = b"\x12"  # AggregatedRecord.explicit_hash_key_table, length-delimited
_RECORD_TAG = b"\x1a"  # AggregatedRecord.records, length-delimited
_PK_INDEX = b"\x08"  # Record.partition_key_index, varint
_EHK_INDEX_0 = b"\x10\x00"  # Record.explicit_hash_key_index = 0
_DATA_TAG = b"\x1a"  # Record.data, length-delimited

# The same AggregatedRecord keys as integers, for the reader.
_KEYS, _HASH_KEYS, _RECORDS = 0x0A, 0x12, 0x1A
_AGGREGATE_FIELDS = frozenset((_KEYS, _HASH_KEYS, _RECORDS))
_VARINT_MAX_BYTES = 10  # a uint64


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Varints below 4096 (lengths of records up to ~4 KB, key indexes) come from tables: add() is
# the gateway's per-record hot path, and a list index is cheaper than a call (~300 KB in all).
_VARINT_CACHED = 4096
_VARINTS = [_encode_varint(n) for n in range(_VARINT_CACHED)]
_RECORD_PREFIXES = [_RECORD_TAG + v for v in _VARINTS]  # a Record's key and length


def _varint(value: int) -> bytes:
    return _VARINTS[value] if value < _VARINT_CACHED else _encode_varint(value)


def _varint_bytes(value: int) -> int:
    return 1 if value < 0x80 else (value.bit_length() + 6) // 7


def hash_key(partition_key: str) -> int:
    """The 128-bit hash key Kinesis maps ``partition_key`` to: MD5 of its UTF-8, big-endian."""
    digest = hashlib.md5(partition_key.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest, "big")


def put_payload_units(size_bytes: int) -> int:
    """PUT payload units billed for one record of ``size_bytes``: 25,000-byte chunks, rounded up.

    Every record costs at least one unit, however small.
    """
    if size_bytes < 0:
        raise ValueError(f"negative record size {size_bytes}")
    return max(1, -(-size_bytes // PUT_PAYLOAD_UNIT_BYTES))


def _check_explicit_hash_key(value: str) -> None:
    canonical = value.isascii() and value.isdigit() and (value == "0" or value[0] != "0")
    if not canonical or int(value) >= _HASH_KEY_LIMIT:
        raise ValueError(f"explicit hash key must be a decimal in [0, 2**128): {value!r}")


def _check_partition_key(partition_key: str) -> None:
    if not 0 < len(partition_key) <= MAX_PARTITION_KEY_CHARS:
        raise ValueError(
            f"partition key must have 1 to {MAX_PARTITION_KEY_CHARS} characters,"
            f" got {len(partition_key)}"
        )


# Encoded partition_key_table entries, shared by all builders: an aggregate of 51,200 bytes holds
# ~70 records of 700 bytes, so with a fleet of devices nearly every record brings a key new to
# its aggregate. Bounded like a fleet (65,536 keys, ~6 MB of 15-digit ids); cleared when full.
_KEY_ENTRIES: dict[str, bytes] = {}
_KEY_ENTRIES_MAX = 1 << 16


def _key_entry(partition_key: str) -> bytes:
    """A key's table entry (field key, length, UTF-8), validated and cached on first use."""
    entry = _KEY_ENTRIES.get(partition_key)
    if entry is None:
        _check_partition_key(partition_key)
        encoded = partition_key.encode()
        entry = _PK_ENTRY + _varint(len(encoded)) + encoded
        if len(_KEY_ENTRIES) >= _KEY_ENTRIES_MAX:
            _KEY_ENTRIES.clear()
        _KEY_ENTRIES[partition_key] = entry
    return entry


# A Record's fields before its data bytes, by partition key index: the index, the EHK index if
# the aggregate has one, then data's field key.
_HEADS_CACHED = 1024
_HEADS = {
    ehk: [
        _PK_INDEX + v + (_EHK_INDEX_0 if ehk else b"") + _DATA_TAG for v in _VARINTS[:_HEADS_CACHED]
    ]
    for ehk in (False, True)
}


class AggregateBuilder:
    """Packs user records into one aggregated record, knowing its exact size at every step.

    With ``explicit_hash_key`` (a decimal string), the EHK table holds that one key and every
    user record points at it, so the aggregate's own ExplicitHashKey is also each user record's:
    consumers that check a record's hash against the shard's range (the KCL drops the whole
    aggregate otherwise) keep it. Without it the table is empty and each user record hashes by
    its own partition key. Partition keys are stored once each, in first-seen order.

    No size bound is enforced: the caller compares :meth:`size_with` with its own (the KPL's
    51,200 bytes; the service's 1 MiB counts the aggregate's partition key too).
    """

    __slots__ = (
        "_count",
        "_ehk",
        "_ehk_entry",
        "_head_table",
        "_heads",
        "_parts",
        "_size",
        "_table",
    )

    def __init__(self, explicit_hash_key: str | None = None) -> None:
        self._ehk = explicit_hash_key
        if explicit_hash_key is None:
            self._ehk_entry = b""
        else:
            _check_explicit_hash_key(explicit_hash_key)
            encoded = explicit_hash_key.encode()
            self._ehk_entry = _EHK_ENTRY + _varint(len(encoded)) + encoded
        self._head_table = _HEADS[explicit_hash_key is not None]
        self._heads: dict[str, bytes] = {}  # partition key -> its records' head
        self._table: list[bytes] = []  # partition_key_table entries
        self._parts: list[bytes] = []  # encoded records, four pieces each
        self._size = _FIXED_BYTES + len(self._ehk_entry)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def size(self) -> int:
        """Exact byte size of :meth:`build`'s result now (magic + protobuf + digest)."""
        return self._size

    @property
    def explicit_hash_key(self) -> str | None:
        return self._ehk

    @property
    def first_partition_key(self) -> str:
        """The first user record's partition key; ``ValueError`` while empty."""
        if not self._heads:
            raise ValueError("empty aggregate has no partition key")
        return next(iter(self._heads))

    def size_with(self, partition_key: str, data: bytes) -> int:
        """Exact byte size of the aggregated record if this user record were added.

        ``ValueError`` if the key is new to the builder and empty or over 256 characters.
        """
        n = len(data)
        head = self._heads.get(partition_key)
        if head is None:
            new_entry = len(_KEY_ENTRIES.get(partition_key) or _key_entry(partition_key))
            index = len(self._table)
            head_bytes = (
                len(self._head_table[index])
                if index < _HEADS_CACHED
                else (len(self._head_table[0]) - 1 + _varint_bytes(index))
            )
        else:
            new_entry = 0
            head_bytes = len(head)
        # Varint sizes inlined for the common lengths (< 16 KiB): this runs once per record.
        inner = head_bytes + n + (1 if n < 0x80 else 2 if n < 0x4000 else _varint_bytes(n))
        return (
            self._size
            + new_entry
            + inner
            + (2 if inner < 0x80 else 3 if inner < 0x4000 else 1 + _varint_bytes(inner))
        )

    def add(self, partition_key: str, data: bytes) -> None:
        """Append a user record; ``ValueError`` if the key is empty or over 256 characters."""
        head = self._heads.get(partition_key) or self._new_key(partition_key)
        n = len(data)
        data_len = _VARINTS[n] if n < _VARINT_CACHED else _encode_varint(n)
        inner = len(head) + len(data_len) + n
        prefix = (
            _RECORD_PREFIXES[inner]
            if inner < _VARINT_CACHED
            else _RECORD_TAG + _encode_varint(inner)
        )
        self._parts += (prefix, head, data_len, data)
        self._size += len(prefix) + inner
        self._count += 1

    def _new_key(self, partition_key: str) -> bytes:
        entry = _KEY_ENTRIES.get(partition_key) or _key_entry(partition_key)
        index = len(self._table)
        if index < _HEADS_CACHED:
            head = self._head_table[index]
        else:
            tail = self._head_table[0][2:]
            head = _PK_INDEX + _encode_varint(index) + tail
        self._table.append(entry)
        self._heads[partition_key] = head
        self._size += len(entry)
        return head

    def build(self) -> bytes:
        """The aggregated record: magic, protobuf, MD5 of the protobuf. Idempotent."""
        if not self._count:
            # Stock deaggregators read a 20-byte record as plain data, not as zero records.
            raise ValueError("cannot build an empty aggregate")
        body = b"".join([*self._table, self._ehk_entry, *self._parts])
        return b"".join((MAGIC, body, hashlib.md5(body, usedforsecurity=False).digest()))


UserRecord = tuple[str, str | None, bytes]


def deaggregate(data: bytes) -> list[UserRecord] | None:
    """The user records ``(partition_key, explicit_hash_key, data)`` of an aggregated record.

    ``None`` when ``data`` is not one: no magic, no room for a digest, or a digest mismatch (the
    KCL and ``aws-kinesis-agg`` pass such records through as plain data). A record with the magic
    and a valid digest whose protobuf is malformed raises ``DecodeError("bad_aggregate")``, where
    stock deaggregators would pass it through too: the caller chooses.
    """
    end = len(data) - DIGEST_BYTES
    if end <= len(MAGIC) or not data.startswith(MAGIC):
        return None
    body = memoryview(data)[len(MAGIC) : end]
    if hashlib.md5(body, usedforsecurity=False).digest() != data[end:]:
        return None
    return _parse_aggregate(data, len(MAGIC), end)


def _bad(detail: str) -> DecodeError:
    return DecodeError("bad_aggregate", detail)


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos + 1 < end:  # one and two bytes (lengths below 16 KiB) without the loop
        low = buf[pos]
        if low < 0x80:
            return low, pos + 1
        high = buf[pos + 1]
        if high < 0x80:
            return low & 0x7F | high << 7, pos + 2
    value = shift = 0
    for i in range(pos, min(end, pos + _VARINT_MAX_BYTES)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    raise _bad(f"truncated or overlong varint at {pos}")


def _skip_field(buf: bytes, pos: int, end: int, wire_type: int) -> int:
    """Position after an unknown field's value (proto2 parsers skip unknown fields)."""
    if wire_type == 0:
        return _read_varint(buf, pos, end)[1]
    if wire_type == 1:
        pos += 8
    elif wire_type == 5:
        pos += 4
    elif wire_type == 2:
        length, pos = _read_varint(buf, pos, end)
        pos += length
    else:  # 3 and 4 are deprecated groups, 6 and 7 do not exist
        raise _bad(f"unsupported wire type {wire_type}")
    if pos > end:
        raise _bad("field runs past the end of its message")
    return pos


def _read_key(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    key, pos = _read_varint(buf, pos, end)
    if key >> 3 == 0:
        raise _bad("field number 0")
    return key >> 3, key & 7, pos


def _parse_aggregate(buf: bytes, pos: int, end: int) -> list[UserRecord]:
    keys: list[str] = []
    hash_keys: list[str] = []
    spans: list[tuple[int, int | None, int, int]] = []
    # One-byte keys and lengths are read inline: nearly every user record brings a table entry
    # and a Record, and a call per varint would double the time this loop takes.
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(buf, pos, end)
        if key not in _AGGREGATE_FIELDS:
            if key >> 3 == 0:
                raise _bad("field number 0")
            if key >> 3 <= 3:
                raise _bad(f"field {key >> 3} of AggregatedRecord has wire type {key & 7}")
            pos = _skip_field(buf, pos, end, key & 7)
            continue
        if pos < end and buf[pos] < 0x80:
            stop = pos + 1 + buf[pos]
            pos += 1
        else:
            length, pos = _read_varint(buf, pos, end)
            stop = pos + length
        if stop > end:
            raise _bad(f"field {key >> 3} of AggregatedRecord runs past the end")
        if key == _RECORDS:
            spans.append(_canonical_record(buf, pos, stop) or _parse_record(buf, pos, stop))
        else:
            try:
                text = buf[pos:stop].decode()
            except UnicodeDecodeError:
                raise _bad(f"key table entry at {pos} is not UTF-8") from None
            (keys if key == _KEYS else hash_keys).append(text)
        pos = stop
    # Tables may legally follow the records, so indexes are resolved once everything is read.
    try:
        return [
            (keys[k], None if e is None else hash_keys[e], buf[start:stop])
            for k, e, start, stop in spans
        ]
    except IndexError:
        raise _bad(f"a key index is past its table ({len(keys)}, {len(hash_keys)})") from None


def _canonical_record(buf: bytes, pos: int, end: int) -> tuple[int, int | None, int, int] | None:
    """A Record laid out as encoders write it, with one-byte indexes; else ``None``.

    ``08 <pk index> [10 <ehk index>] 1a <data length> <data>``: a shortcut that more than
    halves the time to read what we and the KPL write. Anything else takes the general path.
    """
    if end - pos < 4 or buf[pos] != 0x08 or buf[pos + 1] >= 0x80:
        return None
    key_index = buf[pos + 1]
    hash_key_index = None
    pos += 2
    if buf[pos] == 0x10:
        if end - pos < 4 or buf[pos + 1] >= 0x80:
            return None
        hash_key_index = buf[pos + 1]
        pos += 2
    if buf[pos] != 0x1A:
        return None
    length, pos = _read_varint(buf, pos + 1, end)
    return (key_index, hash_key_index, pos, end) if pos + length == end else None


def _parse_record(buf: bytes, pos: int, end: int) -> tuple[int, int | None, int, int]:
    """One Record: (partition_key_index, explicit_hash_key_index, data start, data stop)."""
    key_index: int | None = None
    hash_key_index: int | None = None
    span: tuple[int, int] | None = None
    while pos < end:
        field, wire_type, pos = _read_key(buf, pos, end)
        if field in (1, 2) and wire_type == 0:
            value, pos = _read_varint(buf, pos, end)
            if field == 1:
                key_index = value
            else:
                hash_key_index = value
        elif field == 3 and wire_type == 2:
            length, pos = _read_varint(buf, pos, end)
            if pos + length > end:
                raise _bad("Record.data runs past the end of its record")
            span = (pos, pos + length)
            pos += length
        elif field <= 3:
            raise _bad(f"field {field} of Record has wire type {wire_type}")
        else:  # tags (4) and anything newer
            pos = _skip_field(buf, pos, end, wire_type)
    if key_index is None or span is None:
        raise _bad("Record lacks a required field (partition_key_index or data)")
    return key_index, hash_key_index, span[0], span[1]
