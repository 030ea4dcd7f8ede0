"""Settings of the sinks (``[sink]``): the local files and, in production, Kinesis."""

from __future__ import annotations

from pydantic import Field

from gateway.common.settings_base import Section
from gateway.journal.settings import LocalSinkSettings


class KinesisStreamSettings(Section):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_.-]+$")
    # KPL-format aggregation: many user records per Kinesis record, routed to the shard their
    # partition keys hash to (stock deaggregators and Firehose read them).
    aggregate: bool = True


class KinesisSettings(Section):
    """The production sink: raw and parsed records to two Kinesis Data Streams.

    Credentials come from the standard AWS chain (environment, profile, EC2 instance metadata
    with IMDSv2); the endpoint from ``endpoint_url`` or botocore's ``AWS_ENDPOINT_URL_KINESIS``.
    """

    raw: KinesisStreamSettings
    parsed: KinesisStreamSettings
    notifications: KinesisStreamSettings | None = None
    region: str | None = None
    endpoint_url: str | None = None
    # A shipper with less than a full call's worth of records waits this long from the oldest
    # for more (the KPL's RecordMaxBufferedTime): fewer, fuller PutRecords calls. ACKs never
    # wait for it (under `journaled`).
    linger_ms: int = Field(default=50, ge=0, le=60_000)
    # Aggregates close at this size: 50,000 bytes bill exactly 2 PUT payload units (25,000 B
    # each), where the KPL's 51,200 bills 3 (bench/kinesis_agg.py).
    aggregate_max_bytes: int = Field(default=50_000, ge=1024, le=1_000_000)
    # `gateway replay` and `gateway parse`, which write straight to Kinesis: a record not
    # delivered within this long is dead-lettered (the KPL's RecordTtl, longer by default).
    # The gateway's shippers never give up on a record for taking long: the journal keeps it.
    record_ttl_s: float = Field(default=60.0, gt=0)
    retry_first_s: float = Field(default=0.1, gt=0)
    retry_max_s: float = Field(default=5.0, gt=0)
    # Per-shard send rate as a percentage of the shard limits (1,000 records/s and 1 MiB/s),
    # like the KPL's RateLimit; lowered on throttling, back within 10 s once throttling stops.
    rate_limit_pct: int = Field(default=150, ge=10, le=1000)
    shard_map_refresh_s: float = Field(default=60.0, gt=0)
    request_timeout_s: float = Field(default=10.0, gt=0)


class SinkSettings(Section):
    local: LocalSinkSettings = LocalSinkSettings()
    # When set, raw and parsed records (and notifications, if configured) go to Kinesis;
    # decode errors and dead letters stay in local files.
    kinesis: KinesisSettings | None = None
