"""Token buckets and reconnect backoff, driven with a given clock and random source."""

from __future__ import annotations

import random

from gateway.bridge.pacing import Backoff, TokenBucket


def test_token_bucket_spends_its_burst_then_spaces_publishes_at_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=3, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    # Waiters queue behind each other: one leaves every 1 / rate seconds.
    assert [round(bucket.reserve(0.0), 3) for _ in range(3)] == [0.1, 0.2, 0.3]
    assert bucket.reserve(10.0) == 0.0  # refilled, never beyond the burst
    assert [bucket.reserve(10.0) for _ in range(3)][-1] > 0
    assert bucket.taken == 10
    assert round(bucket.waited_s, 3) == round(0.1 + 0.2 + 0.3 + 0.1, 3)


def test_backoff_is_jittered_capped_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(7))
    delays = [backoff.next_delay_s() for _ in range(20)]
    assert all(0.5 <= d <= 4.0 for d in delays)
    assert max(delays) == 4.0 and len(set(delays)) > 5
    backoff.reset()
    assert backoff.next_delay_s() <= 1.5  # uniform(base, 3 * base)
