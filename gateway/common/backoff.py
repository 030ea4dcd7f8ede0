"""How long to wait before trying again: capped exponential backoff with jitter.

One policy for every retry loop of the gateway (sink writes, Kinesis entries, notification
deliveries, bridge and simulated-device reconnects): the n-th failure in a row waits
``min(cap_s, first_s * 2 ** (n - 1))`` times a random factor in [0.5, 1.0] ("equal jitter" in
"Exponential Backoff And Jitter", AWS Architecture Blog), so that clients failing together do
not retry in lockstep, yet each waits at least half of its step. Pure: the random source is
passed in, so tests pin the jitter.
"""

from __future__ import annotations

import random
from typing import Protocol

# 2.0 ** 1024 overflows a float; any cap is reached long before.
_MAX_DOUBLINGS = 1023


class RandomSource(Protocol):
    """What backoff needs of ``random.Random`` (tests pass a fake that pins the jitter)."""

    def uniform(self, a: float, b: float) -> float: ...


class Backoff:
    """The waits of one retry loop: ``next_delay_s`` after each failure, ``reset`` after a
    success. ``delay_s(n)`` alone serves a caller that counts failures itself."""

    __slots__ = ("_failures", "_rng", "cap_s", "first_s")

    def __init__(self, first_s: float, cap_s: float, rng: RandomSource | None = None) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self._rng: RandomSource = rng or random.Random()
        self._failures = 0

    def delay_s(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row (1: the first)."""
        step = min(self.cap_s, self.first_s * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))
        return step * self._rng.uniform(0.5, 1.0)

    def next_delay_s(self) -> float:
        """One more failure: how long to wait before the next try."""
        self._failures += 1
        return self.delay_s(self._failures)

    def reset(self) -> None:
        """After a success: the next failure waits ``first_s`` again (jittered)."""
        self._failures = 0
