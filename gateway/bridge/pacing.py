"""How fast the bridge may go: a token bucket per destination connection, jittered reconnects.

Both are pure (the caller passes the clock reading and the random source), so tests drive them
without sleeping.
"""

from __future__ import annotations

import random


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up; one token per publish.

    AWS IoT Core throttles a connection past 100 publishes a second, so every connection of a
    destination pool spends from its own bucket before each PUBLISH.
    """

    __slots__ = ("_tokens", "_updated", "burst", "rate_per_s", "taken", "waited_s")

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._updated = now
        self.taken = 0
        self.waited_s = 0.0  # total delay imposed: how much the bucket held the drain back

    def reserve(self, now: float) -> float:
        """Take one token; returns how long to wait before using it (0.0: go now).

        A reservation may drive the bucket negative: later callers queue behind it, so waiters
        leave one every ``1 / rate_per_s`` seconds however many there are.
        """
        self._tokens = min(
            float(self.burst), self._tokens + (now - self._updated) * self.rate_per_s
        )
        self._updated = now
        self._tokens -= 1.0
        self.taken += 1
        delay = 0.0 if self._tokens >= 0 else -self._tokens / self.rate_per_s
        self.waited_s += delay
        return delay


class Backoff:
    """Decorrelated-jitter backoff ("Exponential Backoff And Jitter", AWS Architecture Blog;
    mosquitto's ``restart_timeout base cap``): each wait is uniform between ``base_s`` and three
    times the previous one, capped, so a fleet of reconnecting clients spreads out."""

    __slots__ = ("_previous", "_rng", "base_s", "cap_s")

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self._rng = rng or random.Random()
        self._previous = base_s

    def next_delay_s(self) -> float:
        self._previous = min(self.cap_s, self._rng.uniform(self.base_s, self._previous * 3))
        return self._previous

    def reset(self) -> None:
        """After a connection that worked: the next failure starts from ``base_s`` again."""
        self._previous = self.base_s
