"""Kinesis shard routing (the rate limiter: tests/gateway/sinks/kinesis/test_limiter.py)."""

from __future__ import annotations

from gateway.sinks.kinesis.shards import ShardMap
from parser.kpl import hash_key

QUARTER = 2**128 // 4
SHARDS = [(i * QUARTER, (i + 1) * QUARTER - 1, f"shardId-{i:012d}") for i in range(4)]


def test_shard_map_routes_every_hash_to_its_range() -> None:
    shard_map = ShardMap(reversed(SHARDS))  # order of ListShards pages does not matter
    assert shard_map.shard_for(0) == ("shardId-000000000000", 0)
    assert shard_map.shard_for(QUARTER - 1) == ("shardId-000000000000", 0)
    assert shard_map.shard_for(QUARTER) == ("shardId-000000000001", QUARTER)
    assert shard_map.shard_for(2**128 - 1) == ("shardId-000000000003", 3 * QUARTER)
    key = "356307042441013"
    found = shard_map.shard_for(hash_key(key))
    assert found is not None and found[1] <= hash_key(key) < found[1] + QUARTER


def test_shard_map_with_a_gap_says_so() -> None:
    shard_map = ShardMap([SHARDS[0], SHARDS[2]])  # mid-reshard: shard 1's range is missing
    assert shard_map.shard_for(QUARTER + 5) is None
