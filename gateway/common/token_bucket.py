"""A token bucket: ``rate_per_s`` tokens a second, at most ``capacity`` saved up.

Pure (the caller passes the clock reading), so tests drive it without sleeping. Takers may drive
it negative: the debt is paid before the next taker goes, so the long-run rate holds even for a
taking larger than the bucket. Users: the bridge spends one token per PUBLISH on each destination
connection (AWS IoT Core throttles a connection past 100 publishes a second), the Kinesis sink
two buckets per shard (records/s and bytes/s). ``parser.rules`` keeps its own take-or-refuse
bucket: ``parser/`` is pure and imports nothing from ``gateway/``.
"""

from __future__ import annotations


class TokenBucket:
    """Starts full. ``rate_per_s`` and ``capacity`` may change (an adaptive rate): set both,
    then the next call refills at the new rate."""

    __slots__ = ("_tokens", "_updated", "capacity", "rate_per_s", "taken", "waited_s")

    def __init__(self, rate_per_s: float, capacity: float, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._tokens = float(capacity)
        self._updated = now
        self.taken = 0.0
        self.waited_s = 0.0  # total delay ``reserve`` imposed: how much the bucket held back

    def refill(self, now: float) -> float:
        """Add what accrued since the last look; returns the tokens there (negative: in debt)."""
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_s)
        self._updated = now
        return self._tokens

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` tokens are there (0.0: now); an amount over the capacity
        waits for a full bucket, never for more than it can hold."""
        short = min(amount, self.capacity) - self.refill(now)
        return max(0.0, short) / self.rate_per_s

    def take(self, amount: float, now: float) -> None:
        """Spend ``amount`` tokens, going into debt if there are fewer."""
        self._tokens = self.refill(now) - amount
        self.taken += amount

    def reserve(self, now: float) -> float:
        """Take one token; returns how long to wait before using it (0.0: go now).

        A reservation may drive the bucket negative: later callers queue behind it, so waiters
        leave one every ``1 / rate_per_s`` seconds however many there are.
        """
        self.take(1.0, now)
        delay = max(0.0, -self._tokens) / self.rate_per_s
        self.waited_s += delay
        return delay
