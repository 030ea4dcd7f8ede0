"""Pure parts of the Kinesis sink: shard routing and the per-shard rate limiter."""

from __future__ import annotations

from gateway.kinesis import SHARD_BYTES_PER_S, SHARD_RECORDS_PER_S, ShardLimiter, ShardMap
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


def test_limiter_paces_each_shard_and_adapts_to_throttling() -> None:
    limiter = ShardLimiter(max_factor=1.0)
    need = {"s0": (SHARD_RECORDS_PER_S, 1000)}
    assert limiter.wait_s(need, now=0.0) == 0.0  # a new shard has a second's allowance
    limiter.take(need, now=0.0)
    assert limiter.wait_s(need, now=0.0) == 1.0  # then it refills at 1,000 records/s
    assert limiter.wait_s({"s0": (500, 0)}, now=0.5) == 0.0
    limiter.take({"s0": (500, 0)}, now=0.5)
    assert limiter.wait_s({"s0": (500, 0)}, now=0.5) == 0.5
    assert limiter.wait_s({"s1": (1, SHARD_BYTES_PER_S)}, now=0.5) == 0.0  # s1 is separate
    limiter.throttled("s0")
    assert limiter.buckets["s0"].factor == 0.7
    slower = limiter.wait_s({"s0": (700, 0)}, now=0.5)
    assert abs(slower - 1.0) < 1e-9  # 700 records at 70 % of 1,000/s
    for _ in range(20):
        limiter.succeeded("s0")
    assert limiter.buckets["s0"].factor == 1.0  # recovers, never above the configured rate
