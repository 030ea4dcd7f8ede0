"""The token bucket, driven with a given clock (no sleeping)."""

from __future__ import annotations

import pytest

from gateway.common.token_bucket import TokenBucket


def test_token_bucket_spends_its_burst_then_spaces_publishes_at_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=10.0, capacity=3, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    # Waiters queue behind each other: one leaves every 1 / rate seconds.
    assert [round(bucket.reserve(0.0), 3) for _ in range(3)] == [0.1, 0.2, 0.3]
    assert bucket.reserve(10.0) == 0.0  # refilled, never beyond the capacity
    assert [bucket.reserve(10.0) for _ in range(3)][-1] > 0
    assert bucket.taken == 10
    assert round(bucket.waited_s, 3) == round(0.1 + 0.2 + 0.3 + 0.1, 3)


def test_wait_s_says_when_an_amount_is_there_and_takes_nothing() -> None:
    bucket = TokenBucket(rate_per_s=100.0, capacity=100, now=0.0)
    bucket.take(80, now=0.0)
    assert bucket.wait_s(20, now=0.0) == 0.0
    assert bucket.wait_s(50, now=0.0) == pytest.approx(0.3)  # 30 short at 100/s
    assert bucket.wait_s(50, now=0.3) == 0.0  # it was only asked: nothing was spent
    assert bucket.refill(0.3) == pytest.approx(50)


def test_more_than_the_capacity_waits_for_a_full_bucket_and_leaves_a_debt() -> None:
    bucket = TokenBucket(rate_per_s=10.0, capacity=10, now=0.0)
    bucket.take(10, now=0.0)
    # Never admitted by waiting for tokens it cannot hold: a full bucket is enough.
    assert bucket.wait_s(25, now=0.0) == pytest.approx(1.0)
    bucket.take(25, now=1.0)
    assert bucket.refill(1.0) == pytest.approx(-15)
    # The debt is paid before the next taker: the long-run rate holds.
    assert bucket.wait_s(1, now=1.0) == pytest.approx(1.6)


def test_a_changed_rate_applies_from_the_next_refill() -> None:
    bucket = TokenBucket(rate_per_s=10.0, capacity=10, now=0.0)
    bucket.take(10, now=0.0)
    bucket.rate_per_s = bucket.capacity = 5.0
    assert bucket.refill(0.5) == pytest.approx(2.5)
    assert bucket.refill(10.0) == 5.0  # never above the new capacity


def test_a_clock_reading_from_the_past_adds_nothing() -> None:
    bucket = TokenBucket(rate_per_s=10.0, capacity=10, now=5.0)
    bucket.take(10, now=5.0)
    assert bucket.refill(4.0) == 0.0
