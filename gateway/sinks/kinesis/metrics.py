"""Prometheus exposition of the Kinesis sink's counters (``gateway_kinesis_*``), by record class
(``stream`` label: raw, parsed …); the counters are in ``gateway.sinks.kinesis.stats``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from gateway.sinks.kinesis.sink import KinesisSink


class KinesisCollector(Collector):
    def __init__(self, sink: KinesisSink) -> None:
        self._sink = sink

    def collect(self) -> Iterator[Any]:
        lab = ["stream"]

        def counter(name: str, doc: str, extra: list[str] | None = None) -> CounterMetricFamily:
            return CounterMetricFamily(
                f"gateway_kinesis_{name}", doc, labels=[*lab, *(extra or [])]
            )

        calls = counter("put_records_calls", "PutRecords calls")
        users = counter("user_records", "User records delivered (a sequence number returned)")
        records = counter("records", "Kinesis records delivered (aggregates or plain records)")
        sent_bytes = counter("bytes", "Bytes delivered (data and partition keys)")
        units = counter("put_payload_units", "PUT payload units (25 KB chunks) delivered")
        failed = counter(
            "failed_entries", "PutRecords entries that failed, by error code", ["code"]
        )
        retries = counter("retries", "Entries resubmitted after a retriable failure")
        dead = counter("dead_letters", "User records dead-lettered (their frames were not ACKed)")
        throttles = counter("throttles", "Throttling responses by shard", ["shard"])
        errors = counter("request_errors", "Whole PutRecords calls that failed, by code", ["code"])
        latency = HistogramMetricFamily(
            "gateway_kinesis_put_records_seconds", "PutRecords latency", labels=lab
        )
        for cls, st in self._sink.stats.items():
            calls.add_metric([cls], st.put_calls)
            users.add_metric([cls], st.user_records)
            records.add_metric([cls], st.kinesis_records)
            sent_bytes.add_metric([cls], st.bytes)
            units.add_metric([cls], st.payload_units)
            retries.add_metric([cls], st.retries)
            dead.add_metric([cls], st.dead_letters)
            for code, n in st.failed_entries.items():
                failed.add_metric([cls, code], n)
            for shard, n in st.throttles.items():
                throttles.add_metric([cls, shard], n)
            for code, n in st.request_errors.items():
                errors.add_metric([cls, code], n)
            st.put_latency.add_to(latency, [cls])
        yield from (calls, users, records, sent_bytes, units, failed, retries, dead, throttles)
        yield from (errors, latency)
        yield CounterMetricFamily(
            "gateway_kinesis_shard_map_refreshes",
            "ListShards refreshes of the shard maps",
            value=self._sink.shard_map_refreshes,
        )
