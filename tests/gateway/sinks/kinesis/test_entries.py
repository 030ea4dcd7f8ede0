"""A batch as Kinesis entries: aggregates close exactly where an exact size check at every record
would close them, never over the limit, every user record once, in order, on its shard."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sinks.kinesis.entries import build_entries
from gateway.sinks.kinesis.shards import ShardMap, ShardRoutes
from parser.kpl import MAX_PARTITION_KEY_CHARS, AggregateBuilder, deaggregate, hash_key

HALF = 2**127
ROUTES = ShardRoutes(ShardMap([(0, HALF - 1, "s0"), (HALF, 2**128 - 1, "s1")]))

keys = st.text(min_size=1, max_size=MAX_PARTITION_KEY_CHARS).filter(lambda k: "\x00" not in k)
batches = st.lists(
    st.tuples(
        st.one_of(keys, st.sampled_from(["dev-1", "dev-2", "dév-3", "💡" * 64])),
        st.binary(max_size=3000) | st.integers(0, 40_000).map(lambda n: b"x" * n),
    ),
    min_size=1,
    max_size=120,
)


def reference(
    records: list[bytes], keys: list[str], limit: int
) -> list[tuple[str, str, list[int]]]:
    """Greedy aggregation with the exact size check at every record: (shard, EHK, indexes)."""
    out: list[tuple[str, str, list[int]]] = []
    for shard, start in (("s0", 0), ("s1", HALF)):
        builder = AggregateBuilder(str(start))
        members: list[int] = []
        for i, key in enumerate(keys):
            if (hash_key(key) >= HALF) != (shard == "s1"):
                continue
            if len(builder) and builder.size_with(key, records[i]) > limit:
                out.append((shard, str(start), members))
                builder, members = AggregateBuilder(str(start)), []
            builder.add(key, records[i])
            members.append(i)
        if members:
            out.append((shard, str(start), members))
    return out


@settings(max_examples=200, deadline=None)
@given(batch=batches, limit=st.sampled_from([1024, 5000, 50_000]))
def test_aggregates_close_where_an_exact_check_would(
    batch: list[tuple[str, bytes]], limit: int
) -> None:
    keys, records = [k for k, _ in batch], [r for _, r in batch]
    entries = build_entries(records, keys, ROUTES, aggregate=True, aggregate_max_bytes=limit)
    by_shard = sorted(entries, key=lambda e: e.shard or "")
    assert [(e.shard, e.explicit_hash_key, e.indexes) for e in by_shard] == reference(
        records, keys, limit
    )
    for entry in entries:
        # Over the limit only when a single record is bigger than it on its own.
        assert len(entry.data) <= limit or len(entry.indexes) == 1
        unpacked = deaggregate(entry.data)
        assert unpacked == [(keys[i], entry.explicit_hash_key, records[i]) for i in entry.indexes]
        assert entry.partition_key == keys[entry.indexes[0]]
    assert sorted(i for e in entries for i in e.indexes) == list(range(len(batch)))


def test_one_entry_per_record_without_aggregation() -> None:
    keys, records = ["dev-1", "dev-2", "dev-1"], [b"a", b"bb", b"ccc"]
    entries = build_entries(records, keys, ROUTES, aggregate=False, aggregate_max_bytes=50_000)
    assert [(e.data, e.partition_key, e.explicit_hash_key, e.indexes) for e in entries] == [
        (b"a", "dev-1", None, [0]),
        (b"bb", "dev-2", None, [1]),
        (b"ccc", "dev-1", None, [2]),
    ]
    assert [e.shard for e in entries] == [ROUTES.shard_for(k)[0] for k in keys]  # type: ignore[index]
