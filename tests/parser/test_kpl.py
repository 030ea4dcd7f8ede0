"""KPL aggregated records: our builder against the stock ``aws-kinesis-agg`` and back.

Three references: the library's ``RecordAggregator`` (byte-for-byte output), its deaggregator
(reads what we write, as a Lambda consumer would) and its protobuf classes (a real protobuf
encoder, including fields we never write, for our decoder).
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parser import kpl
from parser.errors import DecodeError
from parser.kpl import (
    DIGEST_BYTES,
    MAGIC,
    MAX_PARTITION_KEY_CHARS,
    MAX_RECORD_BYTES,
    AggregateBuilder,
    deaggregate,
    hash_key,
    put_payload_units,
)
from tests.parser.kpl_stock import AGGREGATOR, MESSAGES, stock_deaggregate

Records = list[tuple[str, bytes]]
EHK = str(hash_key("356307042441013"))
DEVICES = [f"3563070424{n:05d}" for n in range(1000)]


def build(records: Records, ehk: str | None = None) -> bytes:
    builder = AggregateBuilder(ehk)
    for key, data in records:
        expected = builder.size_with(key, data)
        builder.add(key, data)
        assert builder.size == expected
    blob = builder.build()
    assert len(blob) == builder.size
    assert len(builder) == len(records)
    return blob


def library_build(records: Records, ehk: str | None = None) -> bytes:
    aggregator = AGGREGATOR.RecordAggregator()
    for key, data in records:
        assert aggregator.add_user_record(key, data, ehk) is None, "library split the aggregate"
    blob: bytes = aggregator.clear_and_get().get_contents()[2]
    return blob


def seal(body: bytes) -> bytes:
    """``body`` framed as an aggregated record with a valid digest."""
    return MAGIC + body + hashlib.md5(body).digest()


CASES: dict[str, Records] = {
    "one": [("356307042441013", b'{"soc":81}')],
    "two distinct keys": [("356307042441013", b"a"), ("356307042441014", b"b")],
    "repeated key": [("356307042441013", bytes([i]) * i) for i in range(40)],
    "many, few keys": [(DEVICES[i % 7], b"%d" % i) for i in range(500)],
    "many, distinct keys": [(DEVICES[i], b"x" * (i % 300)) for i in range(1000)],
    "empty data": [("k", b""), ("k", b""), ("other", b"")],
    "unicode keys": [("fahrzeug-ä", b"1"), ("車両-7", b"2"), ("🚗", b"3"), ("fahrzeug-ä", b"4")],
    "longest key": [("k" * MAX_PARTITION_KEY_CHARS, b"data")],
    "varint boundaries": [
        (f"k{n}", bytes(n)) for n in (127, 128, 4079, 4080, 4095, 4096, 16383, 16384, 70000)
    ],
    "near 1 MiB": [("356307042441013", bytes(range(256)) * 4095 + b"tail")],
}


@pytest.mark.parametrize("ehk", [None, EHK], ids=["no-ehk", "ehk"])
@pytest.mark.parametrize("name", CASES)
def test_round_trip_through_ours_and_the_stock_deaggregator(name: str, ehk: str | None) -> None:
    records = CASES[name]
    blob = build(records, ehk)
    expected = [(key, ehk, data) for key, data in records]
    assert deaggregate(blob) == expected
    assert stock_deaggregate(blob) == expected


@pytest.mark.parametrize("ehk", [None, EHK], ids=["no-ehk", "ehk"])
@pytest.mark.parametrize("name", CASES)
def test_bytes_equal_the_librarys(name: str, ehk: str | None) -> None:
    # The library takes an EHK per user record; passing ours with each one gives the same table
    # (one entry) and indexes (all 0), so no difference is allowed anywhere.
    assert build(CASES[name], ehk) == library_build(CASES[name], ehk)


def test_near_1_mib_fits_the_service_limit() -> None:
    records = CASES["near 1 MiB"]
    assert len(build(records)) + len(records[0][0]) <= MAX_RECORD_BYTES


def test_partition_keys_are_stored_once_in_first_seen_order() -> None:
    builder = AggregateBuilder()
    for key in ["b", "a", "b", "c", "a"]:
        builder.add(key, b"")
    assert builder.first_partition_key == "b"
    table = MESSAGES.AggregatedRecord.FromString(builder.build()[len(MAGIC) : -DIGEST_BYTES])
    assert list(table.partition_key_table) == ["b", "a", "c"]
    assert [r.partition_key_index for r in table.records] == [0, 1, 0, 2, 1]
    assert list(table.explicit_hash_key_table) == []
    assert not any(r.HasField("explicit_hash_key_index") for r in table.records)


def test_explicit_hash_key_is_one_table_entry_every_record_points_at() -> None:
    builder = AggregateBuilder(EHK)
    for key in ["b", "a", "b"]:
        builder.add(key, b"")
    assert builder.explicit_hash_key == EHK
    table = MESSAGES.AggregatedRecord.FromString(builder.build()[len(MAGIC) : -DIGEST_BYTES])
    assert list(table.explicit_hash_key_table) == [EHK]
    assert [r.explicit_hash_key_index for r in table.records] == [0, 0, 0]


@pytest.mark.parametrize("keys", [127, 128, 1023, 1024, 1025, 16384, 16385])
def test_key_index_boundaries(keys: int) -> None:
    # 128: two-byte indexes; 1024: past the cached record heads; 16384: three-byte indexes.
    records = [(f"key-{i}", b"v") for i in range(keys)] + [("key-0", b"again"), ("last", b"")]
    for ehk in (None, EHK):
        blob = build(records, ehk)
        assert deaggregate(blob) == [(key, ehk, data) for key, data in records]
    assert blob == library_build(records, EHK)


def test_builder_keeps_working_after_build() -> None:
    builder = AggregateBuilder()
    builder.add("a", b"1")
    first = builder.build()
    assert builder.build() == first
    builder.add("b", b"2")
    assert len(builder.build()) == builder.size
    assert deaggregate(builder.build()) == [("a", None, b"1"), ("b", None, b"2")]


def test_key_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kpl, "_KEY_ENTRIES", {})
    monkeypatch.setattr(kpl, "_KEY_ENTRIES_MAX", 8)
    records = [(f"device-{i}", b"x") for i in range(50)]
    assert deaggregate(build(records)) == [(key, None, data) for key, data in records]
    assert len(kpl._KEY_ENTRIES) <= 8


def test_empty_builder() -> None:
    builder = AggregateBuilder()
    assert len(builder) == 0
    assert builder.size == len(MAGIC) + DIGEST_BYTES
    assert builder.size_with("k", b"") == len(build([("k", b"")]))
    with pytest.raises(ValueError, match="empty"):
        builder.build()
    with pytest.raises(ValueError, match="empty"):
        _ = builder.first_partition_key


@pytest.mark.parametrize("key", ["", "k" * (MAX_PARTITION_KEY_CHARS + 1)])
def test_partition_key_out_of_bounds_is_refused(key: str) -> None:
    builder = AggregateBuilder()
    with pytest.raises(ValueError, match="partition key"):
        builder.size_with(key, b"")
    with pytest.raises(ValueError, match="partition key"):
        builder.add(key, b"")
    assert len(builder) == 0
    assert builder.size == len(MAGIC) + DIGEST_BYTES


@pytest.mark.parametrize(
    "ehk", ["", "01", "-1", "1.0", " 1", "\u0661", "\u00b2", str(1 << 128), "0x10"]
)
def test_bad_explicit_hash_key_is_refused(ehk: str) -> None:
    with pytest.raises(ValueError, match="explicit hash key"):
        AggregateBuilder(ehk)


@pytest.mark.parametrize("ehk", ["0", "1", str((1 << 128) - 1)])
def test_explicit_hash_key_range(ehk: str) -> None:
    assert deaggregate(build([("k", b"v")], ehk)) == [("k", ehk, b"v")]


keys = st.text(min_size=1, max_size=20).filter(lambda k: len(k) <= MAX_PARTITION_KEY_CHARS)
user_records = st.lists(
    st.tuples(st.one_of(st.sampled_from(DEVICES[:5]), keys), st.binary(max_size=300)),
    min_size=1,
    max_size=60,
)
ehks = st.one_of(st.none(), st.integers(0, (1 << 128) - 1).map(str))


@settings(max_examples=300, deadline=None)
@given(records=user_records, ehk=ehks)
def test_size_is_exact_at_every_step(records: Records, ehk: str | None) -> None:
    # build() checks size_with == size after each add and len(result) == size at the end.
    blob = build(records, ehk)
    assert deaggregate(blob) == [(key, ehk, data) for key, data in records]


@settings(max_examples=100, deadline=None)
@given(records=user_records, ehk=ehks)
def test_random_records_equal_the_library(records: Records, ehk: str | None) -> None:
    assert build(records, ehk) == library_build(records, ehk)


def test_hash_key_known_values() -> None:
    # MD5 test vectors from RFC 1321, appendix A.5, as 128-bit big-endian integers.
    assert hash_key("") == 0xD41D8CD98F00B204E9800998ECF8427E
    assert hash_key("a") == 0x0CC175B9C0F1B6A831C399E269772661
    assert hash_key("abc") == 0x900150983CD24FB0D6963F7D28E17F72


@given(key=st.text(min_size=1, max_size=MAX_PARTITION_KEY_CHARS))
def test_hash_key_is_the_kpls(key: str) -> None:
    # The KPL's user_record.cc sums digest[i] << (16 - i - 1) * 8.
    digest = hashlib.md5(key.encode("utf-8")).digest()
    expected = sum(byte << (16 - i - 1) * 8 for i, byte in enumerate(digest))
    assert hash_key(key) == expected
    assert 0 <= hash_key(key) < 1 << 128


@pytest.mark.parametrize(
    ("size", "units"),
    [
        (0, 1),
        (1, 1),
        (5_000, 1),
        (25_000, 1),
        (25_001, 2),
        (45_000, 2),
        (1_000_000, 40),
        (MAX_RECORD_BYTES, 42),
    ],
)
def test_put_payload_units(size: int, units: int) -> None:
    assert put_payload_units(size) == units


def test_put_payload_units_refuses_negative_sizes() -> None:
    with pytest.raises(ValueError):
        put_payload_units(-1)


VALID = build(CASES["many, few keys"], EHK)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b'{"soc":81}',
        MAGIC,
        MAGIC + bytes(DIGEST_BYTES),
        # An empty protobuf with its correct digest: stock deaggregators need more than magic
        # and digest, so this is plain data too.
        seal(b""),
        VALID[:-1],
        VALID[1:],
        b"\x00" + VALID[1:],
        VALID[: len(MAGIC) + 3] + bytes([VALID[len(MAGIC) + 3] ^ 1]) + VALID[len(MAGIC) + 4 :],
        VALID[:-1] + bytes([VALID[-1] ^ 1]),
    ],
    ids=[
        "empty",
        "json",
        "magic only",
        "magic and zero digest",
        "empty message",
        "truncated",
        "no magic",
        "bad magic",
        "body bit flip",
        "digest bit flip",
    ],
)
def test_not_an_aggregate(data: bytes) -> None:
    assert deaggregate(data) is None


def record(*fields: bytes) -> bytes:
    body = b"".join(fields)
    return b"\x1a" + bytes([len(body)]) + body


PK_A = b"\x0a\x01a"
BAD_BODIES = {
    "truncated varint": b"\x0a",
    "overlong varint": PK_A + b"\x1a" + b"\xff" * 10 + b"\x01",
    "length past the end": b"\x0a\x05ab",
    "pk index out of range": PK_A + record(b"\x08\x01", b"\x1a\x00"),
    "pk index in an empty table": record(b"\x08\x00", b"\x1a\x00"),
    "ehk index without a table": PK_A + record(b"\x08\x00", b"\x10\x00", b"\x1a\x00"),
    "missing pk index": PK_A + record(b"\x1a\x01x"),
    "missing data": PK_A + record(b"\x08\x00"),
    "data past its record": PK_A + record(b"\x08\x00", b"\x1a\x05x"),
    "key not utf-8": b"\x0a\x02\xc3\x28" + record(b"\x08\x00", b"\x1a\x00"),
    "table entry as varint": b"\x08\x01",
    "pk index as bytes": PK_A + record(b"\x0a\x00", b"\x1a\x00"),
    "data as varint": PK_A + record(b"\x08\x00", b"\x18\x00"),
    "field number 0": b"\x02\x00",
    "group": PK_A + b"\x23",
    "unknown field past the end": PK_A + b"\x29" + b"\x00" * 3,
    "garbage": b"\xff\xfe\xfd\xfc",
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES)
def test_malformed_protobuf_with_a_valid_digest_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError) as error:
        deaggregate(seal(body))
    assert error.value.code == "bad_aggregate"


def test_unknown_fields_are_skipped_and_tables_may_follow_records() -> None:
    tag = b"\x22\x07\x0a\x01t\x12\x02vv"  # Record.tags = [Tag(key="t", value="vv")]
    body = (
        record(b"\x08\x01", b"\x10\x00", b"\x1a\x02hi", tag, b"\x28\x05", b"\x31" + bytes(8))
        + b"\x12\x013"
        + b"\x0a\x01a\x0a\x01b"
        + b"\x3d"
        + bytes(4)
        + record(b"\x08\x01", b"\x08\x00", b"\x1a\x00")  # a repeated scalar: the last one wins
    )
    assert deaggregate(seal(body)) == [("b", "3", b"hi"), ("a", None, b"")]


tags = st.lists(st.tuples(st.text(max_size=5), st.one_of(st.none(), st.text(max_size=5))))


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.integers(0, 4), st.one_of(st.none(), st.integers(0, 2)), st.binary(), tags),
        max_size=20,
    )
)
def test_reads_what_protobuf_writes(
    records: list[tuple[int, int | None, bytes, list[tuple[str, str | None]]]],
) -> None:
    message = MESSAGES.AggregatedRecord()
    message.partition_key_table.extend(["k0", "k1", "ключ", "🔑", "k4"])
    message.explicit_hash_key_table.extend(["0", "1", EHK])
    for key_index, ehk_index, data, record_tags in records:
        r = message.records.add()
        r.partition_key_index = key_index
        if ehk_index is not None:
            r.explicit_hash_key_index = ehk_index
        r.data = data
        for tag_key, tag_value in record_tags:
            t = r.tags.add()
            t.key = tag_key
            if tag_value is not None:
                t.value = tag_value
    expected = [
        (
            message.partition_key_table[k],
            None if e is None else message.explicit_hash_key_table[e],
            data,
        )
        for k, e, data, _ in records
    ]
    assert deaggregate(seal(message.SerializeToString())) == expected


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, where, value in edits:
        i = where % (len(buf) + 1)
        if op == 0 and i < len(buf):
            buf[i] ^= value or 0x80
        elif op == 1:
            buf.insert(i, value)
        elif i < len(buf):
            del buf[i]
    return bytes(buf)


def deaggregate_checked(data: bytes) -> list[tuple[str, str | None, bytes]] | None:
    """``deaggregate``, allowing only its three outcomes (another exception fails the test)."""
    try:
        out = deaggregate(data)
    except DecodeError as error:
        assert error.code == "bad_aggregate"
        return None
    assert out is None or isinstance(out, list)
    return out


SMALL = [
    build(CASES["unicode keys"], EHK),
    build(CASES["empty data"]),
    build(CASES["repeated key"][:5]),
]
edits = st.lists(
    st.tuples(st.integers(0, 2), st.integers(min_value=0), st.integers(0, 255)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=500, deadline=None)
@given(blob=st.sampled_from(SMALL), edits=edits)
def test_mutated_aggregates_resealed_parse_or_report(
    blob: bytes, edits: list[tuple[int, int, int]]
) -> None:
    # Re-signing gets the mutated body past the digest, so the protobuf reader meets it.
    deaggregate_checked(seal(mutate(blob[len(MAGIC) : -DIGEST_BYTES], edits)))


@settings(max_examples=300, deadline=None)
@given(blob=st.sampled_from(SMALL), edits=edits)
def test_mutated_aggregates_never_raise(blob: bytes, edits: list[tuple[int, int, int]]) -> None:
    deaggregate_checked(mutate(blob, edits))


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200))
def test_random_sealed_bytes_parse_or_report(body: bytes) -> None:
    deaggregate_checked(seal(body))
