"""Backoff: capped doubling with 50-100 % jitter, driven with a pinned random source."""

from __future__ import annotations

import random

import pytest

from gateway.common.backoff import Backoff


class Pinned:
    """A random source that always answers the same point of the range (0: low, 1: high)."""

    def __init__(self, at: float) -> None:
        self.at = at

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.at


def test_delays_double_from_first_to_the_cap() -> None:
    backoff = Backoff(0.5, 4.0, Pinned(1.0))
    assert [backoff.next_delay_s() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_jitter_keeps_at_least_half_of_each_step() -> None:
    backoff = Backoff(0.5, 4.0, Pinned(0.0))
    assert [backoff.next_delay_s() for _ in range(5)] == [0.25, 0.5, 1.0, 2.0, 2.0]


def test_a_real_random_source_spreads_delays_within_the_bounds() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(7))
    delays = [backoff.next_delay_s() for _ in range(30)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(2.0 <= d <= 4.0 for d in delays[4:])
    assert len(set(delays)) == len(delays)  # jittered: clients failing together spread out


def test_reset_starts_from_first_again() -> None:
    backoff = Backoff(0.5, 4.0, Pinned(1.0))
    for _ in range(5):
        backoff.next_delay_s()
    backoff.reset()
    assert backoff.next_delay_s() == 0.5


def test_delay_s_is_a_function_of_the_failure_count() -> None:
    backoff = Backoff(1.0, 8.0, Pinned(1.0))
    assert [backoff.delay_s(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff.next_delay_s() == 1.0  # delay_s does not count a failure


@pytest.mark.parametrize("failures", [1100, 10**9])
def test_a_long_outage_stays_at_the_cap(failures: int) -> None:
    assert Backoff(0.1, 30.0, Pinned(1.0)).delay_s(failures) == 30.0
