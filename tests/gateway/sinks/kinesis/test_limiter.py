"""The per-shard rate limiter, on a fake clock: throttling slows a shard, it never stops one."""

from __future__ import annotations

import pytest

from gateway.sinks.kinesis.limiter import (
    MIN_FACTOR,
    RECOVERY_S,
    SHARD_BYTES_PER_S,
    SHARD_RECORDS_PER_S,
    ShardLimiter,
)

MIB = 1024 * 1024
# What item 1 of issue 13 saw stall: 500 parsed records of ~700 bytes, all for one shard.
FULL_CALL = {"s0": (500, 500 * 700)}
# No wait may exceed what a full bucket at the floor rate plus the debt of one maximal call
# (5 MiB) costs; the recovery of the rate only shortens it.
WAIT_BOUND_S = 5 * MIB / (SHARD_BYTES_PER_S * MIN_FACTOR) + 2.0


def admitted_at(
    limiter: ShardLimiter, needs: dict[str, tuple[int, int]], now: float, horizon_s: float
) -> float | None:
    """When a caller that sleeps what ``wait_s`` says and asks again is admitted (fake clock)."""
    until = now + horizon_s
    while now <= until:
        wait = limiter.wait_s(needs, now)
        if wait == 0.0:
            return now
        assert 0.0 < wait <= WAIT_BOUND_S
        now += wait
    return None


def test_limiter_paces_each_shard_at_the_configured_rate() -> None:
    limiter = ShardLimiter(max_factor=1.0)
    need = {"s0": (SHARD_RECORDS_PER_S, 1000)}
    assert limiter.wait_s(need, now=0.0) == 0.0  # a new shard has a second's allowance
    limiter.take(need, now=0.0)
    assert limiter.wait_s(need, now=0.0) == 1.0  # then it refills at 1,000 records/s
    assert limiter.wait_s({"s0": (500, 0)}, now=0.5) == 0.0
    limiter.take({"s0": (500, 0)}, now=0.5)
    assert limiter.wait_s({"s0": (500, 0)}, now=0.5) == 0.5
    assert limiter.wait_s({"s1": (1, SHARD_BYTES_PER_S)}, now=0.5) == 0.0  # s1 is separate


@pytest.mark.parametrize("shard_calls", [1, 2, 3])
def test_a_4_mib_batch_for_one_shard_is_sent_and_the_long_run_rate_holds(shard_calls: int) -> None:
    limiter = ShardLimiter(max_factor=1.5)
    big = {"s0": (80, 4 * MIB)}  # more than the 1.5 MiB a full bucket holds
    now = 0.0
    times = []
    for _ in range(shard_calls + 1):
        at = admitted_at(limiter, big, now, horizon_s=10.0)
        assert at is not None, "a call larger than the bucket was never admitted"
        limiter.take(big, at)
        times.append(at)
        now = at
    assert times[0] == 0.0  # a full bucket admits it at once
    # Each call waited for the debt of the one before: no faster than 1.5 MiB/s on average.
    sent = 4 * MIB * shard_calls
    assert sent / (times[-1] - times[0]) <= 1.5 * SHARD_BYTES_PER_S * 1.000001


@pytest.mark.parametrize("cuts", [5, 500])
def test_after_throttling_the_next_full_call_is_admitted_within_a_bounded_wait(cuts: int) -> None:
    # 5 cuts: a run of throttled calls; 500: even one cut per entry of an all-throttled call
    # (the sink makes one per call) must not stop the shard for good.
    limiter = ShardLimiter(max_factor=1.5)
    limiter.take(FULL_CALL, now=0.0)
    for i in range(cuts):
        limiter.throttled("s0", now=0.001 * i)
    assert limiter.shards["s0"].factor < 0.26  # cut well below what FULL_CALL needs
    at = admitted_at(limiter, FULL_CALL, now=0.5, horizon_s=RECOVERY_S + 2.0)
    assert at is not None, "the throttled shard never admitted another call"
    limiter.take(FULL_CALL, at)
    # It keeps admitting such calls after that, too.
    assert admitted_at(limiter, FULL_CALL, now=at, horizon_s=RECOVERY_S) is not None


def test_throttling_slows_a_shard_and_time_restores_the_configured_rate() -> None:
    limiter = ShardLimiter(max_factor=1.0)
    limiter.take({"s0": (1000, 0)}, now=0.0)  # empty
    limiter.throttled("s0", now=0.0)
    assert limiter.shards["s0"].factor == pytest.approx(0.7)
    # At 70 % of 1,000 records/s, 350 records take half a second (the rate climbs meanwhile,
    # so the estimate is an upper bound).
    assert limiter.wait_s({"s0": (350, 0)}, now=0.0) == pytest.approx(0.5)
    limiter.wait_s({"s0": (1, 0)}, now=RECOVERY_S * 0.3 / 2)
    assert limiter.shards["s0"].factor == pytest.approx(0.85)  # additive recovery over time
    limiter.wait_s({"s0": (1, 0)}, now=RECOVERY_S)
    assert limiter.shards["s0"].factor == 1.0  # back, never above the configured rate
    limiter.wait_s({"s0": (1, 0)}, now=10 * RECOVERY_S)
    assert limiter.shards["s0"].factor == 1.0
