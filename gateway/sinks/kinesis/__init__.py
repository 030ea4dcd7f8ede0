"""The Kinesis sink (``sink``) and its parts, one job each: ``entries`` (KPL aggregation by
shard), ``shards`` (shard maps, ListShards), ``limiter`` (per-shard rate), ``put`` (one
PutRecords call and its answer), ``lean`` (PutRecords without botocore's request machinery) and
``sigv4`` (its signer), ``stats`` (counters)."""

from gateway.sinks.kinesis.shards import list_shards
from gateway.sinks.kinesis.sink import KinesisSetupError, KinesisSink
from gateway.sinks.kinesis.stats import KinesisStats

__all__ = ["KinesisSetupError", "KinesisSink", "KinesisStats", "list_shards"]
