"""Per-shard rate limiting of the Kinesis sink, adaptive to throttling (AIMD)."""

from __future__ import annotations

from dataclasses import dataclass, field

# A shard takes 1,000 records and 1 MiB a second (PutRecords limits).
SHARD_RECORDS_PER_S = 1000
SHARD_BYTES_PER_S = 1024 * 1024
# Rate adaptation: cut on throttling, back to the configured rate within RECOVERY_S of the
# last cut.
THROTTLED_FACTOR = 0.7
MIN_FACTOR = 0.1
RECOVERY_S = 10.0


@dataclass(slots=True)
class _Bucket:
    records: float
    bytes: float
    updated: float
    factor: float


@dataclass
class ShardLimiter:
    """Token buckets per shard (records/s and bytes/s) at an adaptive share of the shard limits.

    The share adapts like TCP's congestion window (AIMD): each call that came back throttled on
    a shard cuts its rate (x0.7, floor 10 %; once per call, not per entry, so one all-throttled
    answer is one cut), and time restores it (additively: the configured rate is back within
    ``RECOVERY_S`` of the last cut). 5xx answers and connection failures say nothing about a
    shard's throughput and leave the rate alone; the sender's backoff already slows them.

    The limiter may slow the sink, never stop it: a call needing more than a bucket holds goes
    once the bucket is full and leaves it in debt, so a 4 MiB batch for one shard is sent and the
    long-run rate still holds.
    """

    max_factor: float
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def _bucket(self, shard: str, now: float) -> _Bucket:
        bucket = self.buckets.get(shard)
        if bucket is None:
            # A new shard starts with a full second's allowance, as an idle one has.
            bucket = self.buckets[shard] = _Bucket(
                SHARD_RECORDS_PER_S * self.max_factor,
                SHARD_BYTES_PER_S * self.max_factor,
                now,
                self.max_factor,
            )
        elapsed = max(0.0, now - bucket.updated)
        bucket.factor = min(self.max_factor, bucket.factor + elapsed * self.max_factor / RECOVERY_S)
        rate = bucket.factor  # each bucket holds one second at its rate
        bucket.records = min(
            SHARD_RECORDS_PER_S * rate, bucket.records + elapsed * SHARD_RECORDS_PER_S * rate
        )
        bucket.bytes = min(
            SHARD_BYTES_PER_S * rate, bucket.bytes + elapsed * SHARD_BYTES_PER_S * rate
        )
        bucket.updated = now
        return bucket

    def wait_s(self, needs: dict[str, tuple[int, int]], now: float) -> float:
        """Seconds until every shard in ``needs`` (records, bytes) admits the call; 0 = go.

        An estimate at the rate of the moment: the rate recovers meanwhile (and with it what a
        full bucket holds), so a caller waits and asks again. A call larger than the bucket is
        admitted within ``RECOVERY_S`` plus what its debt and a full bucket take to refill.
        """
        wait = 0.0
        for shard, (records, size) in needs.items():
            b = self._bucket(shard, now)
            per_s_r = SHARD_RECORDS_PER_S * b.factor
            per_s_b = SHARD_BYTES_PER_S * b.factor
            # Capped at what a full bucket holds: a bigger call waits for a full bucket.
            short_r = max(0.0, min(records, per_s_r) - b.records) / per_s_r
            short_b = max(0.0, min(size, per_s_b) - b.bytes) / per_s_b
            wait = max(wait, short_r, short_b)
        return wait

    def take(self, needs: dict[str, tuple[int, int]], now: float) -> None:
        for shard, (records, size) in needs.items():
            b = self._bucket(shard, now)
            # A call bigger than the bucket leaves it negative: the debt is paid before the next.
            b.records -= records
            b.bytes -= size

    def throttled(self, shard: str, now: float) -> None:
        """One call came back throttled on ``shard``: send slower there for a while."""
        b = self._bucket(shard, now)
        b.factor = max(MIN_FACTOR, b.factor * THROTTLED_FACTOR)
