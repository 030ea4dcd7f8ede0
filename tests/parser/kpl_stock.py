"""The stock ``aws-kinesis-agg`` library as a reference for our KPL aggregates: its aggregator,
protobuf classes and a Lambda-style deaggregation (the KPL tests and the Kinesis sink tests read
our records through it, as a consumer would)."""

from __future__ import annotations

import base64
import importlib
from typing import Any

# Imported by name: aws-kinesis-agg ships no type information, so its modules are typed Any.
# The aggregator puts the package's own directory on sys.path, which messages_pb2 needs.
AGGREGATOR: Any = importlib.import_module("aws_kinesis_agg.aggregator")
DEAGGREGATOR: Any = importlib.import_module("aws_kinesis_agg.deaggregator")
MESSAGES: Any = importlib.import_module("aws_kinesis_agg.messages_pb2")


def stock_deaggregate(blob: bytes) -> list[tuple[str, str | None, bytes]]:
    """The user records the stock deaggregator finds in ``blob``, delivered to Lambda."""
    record = {
        "eventSource": "aws:kinesis",
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "a",
            "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
            "approximateArrivalTimestamp": 1767225600.0,
            "data": base64.b64encode(blob).decode(),
        },
    }
    out = []
    for user in DEAGGREGATOR.deaggregate_records([record]):
        body = user["kinesis"]
        assert body.get("aggregated") is True, "stock deaggregator saw a plain record"
        out.append((body["partitionKey"], body["explicitHashKey"], base64.b64decode(body["data"])))
    return out
