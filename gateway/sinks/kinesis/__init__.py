"""The Kinesis sink."""

from gateway.sinks.kinesis.sink import KinesisSetupError, KinesisSink, list_shards

__all__ = ["KinesisSetupError", "KinesisSink", "list_shards"]
