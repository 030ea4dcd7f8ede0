"""Per-shard rate limiting of the Kinesis sink, adaptive to throttling (AIMD)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.common.token_bucket import TokenBucket

# A shard takes 1,000 records and 1 MiB a second (PutRecords limits).
SHARD_RECORDS_PER_S = 1000
SHARD_BYTES_PER_S = 1024 * 1024
# Rate adaptation: cut on throttling, back to the configured rate within RECOVERY_S of the
# last cut.
THROTTLED_FACTOR = 0.7
MIN_FACTOR = 0.1
RECOVERY_S = 10.0


class _Shard:
    """A shard's two buckets, each holding one second at the shard's current share."""

    __slots__ = ("bytes", "factor", "records", "updated")

    def __init__(self, factor: float, now: float) -> None:
        self.factor = factor
        self.records = TokenBucket(SHARD_RECORDS_PER_S * factor, SHARD_RECORDS_PER_S * factor, now)
        self.bytes = TokenBucket(SHARD_BYTES_PER_S * factor, SHARD_BYTES_PER_S * factor, now)
        self.updated = now


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
    shards: dict[str, _Shard] = field(default_factory=dict)

    def _shard(self, shard_id: str, now: float) -> _Shard:
        shard = self.shards.get(shard_id)
        if shard is None:
            # A new shard starts with a full second's allowance, as an idle one has.
            shard = self.shards[shard_id] = _Shard(self.max_factor, now)
        elapsed = max(0.0, now - shard.updated)
        shard.factor = min(self.max_factor, shard.factor + elapsed * self.max_factor / RECOVERY_S)
        shard.updated = now
        # The recovered rate applies to the whole time since the last look.
        for bucket, per_s in (
            (shard.records, SHARD_RECORDS_PER_S),
            (shard.bytes, SHARD_BYTES_PER_S),
        ):
            bucket.rate_per_s = bucket.capacity = per_s * shard.factor
            bucket.refill(now)
        return shard

    def wait_s(self, needs: dict[str, tuple[int, int]], now: float) -> float:
        """Seconds until every shard in ``needs`` (records, bytes) admits the call; 0 = go.

        An estimate at the rate of the moment: the rate recovers meanwhile (and with it what a
        full bucket holds), so a caller waits and asks again. A call larger than the bucket is
        admitted within ``RECOVERY_S`` plus what its debt and a full bucket take to refill.
        """
        wait = 0.0
        for shard_id, (records, size) in needs.items():
            shard = self._shard(shard_id, now)
            # A bigger call than a full bucket holds waits for a full bucket.
            wait = max(wait, shard.records.wait_s(records, now), shard.bytes.wait_s(size, now))
        return wait

    def take(self, needs: dict[str, tuple[int, int]], now: float) -> None:
        for shard_id, (records, size) in needs.items():
            shard = self._shard(shard_id, now)
            # A call bigger than the bucket leaves it negative: the debt is paid before the next.
            shard.records.take(records, now)
            shard.bytes.take(size, now)

    def throttled(self, shard_id: str, now: float) -> None:
        """One call came back throttled on ``shard_id``: send slower there for a while."""
        shard = self._shard(shard_id, now)
        shard.factor = max(MIN_FACTOR, shard.factor * THROTTLED_FACTOR)
