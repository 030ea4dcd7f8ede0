"""Counters of the Kinesis sink, per record class (exported by ``sinks.kinesis.metrics``)."""

from __future__ import annotations

from collections import Counter

from gateway.common.stats import Histogram


class KinesisStats:
    """Counters of one record class (raw, parsed …) going to its Kinesis stream."""

    def __init__(self, record_class: str) -> None:
        self.record_class = record_class
        self.put_calls = 0
        self.put_latency = Histogram()
        self.user_records = 0  # delivered user records
        self.kinesis_records = 0  # delivered Kinesis records (aggregates or plain)
        self.bytes = 0
        self.payload_units = 0
        self.failed_entries: Counter[str] = Counter()  # by error code
        self.retries = 0  # entries resubmitted
        self.dead_letters = 0  # user records
        self.throttles: Counter[str] = Counter()  # by shard id
        self.request_errors: Counter[str] = Counter()  # whole calls that failed, by code
