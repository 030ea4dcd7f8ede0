"""Prometheus exposition of the plain counters in ``gateway.common.stats``.

One registry per process (passed in, no module global), names ``gateway_<thing>_<unit>`` with
``_total`` counters, labels of bounded cardinality only (codec, transport, stream, reason —
never a device id). The HTTP endpoint runs on prometheus-client's own thread; it only reads ints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from gateway.common.stats import ListenerStats, SinkStats
from gateway.pipeline.flow_control import FlowControl


class GatewayCollector(Collector):
    def __init__(
        self,
        listeners: Callable[[], Iterable[ListenerStats]],
        sinks: Iterable[SinkStats],
        flow: FlowControl,
    ) -> None:
        self._listeners = listeners
        self._sinks = list(sinks)
        self._flow = flow

    def collect(self) -> Iterator[Any]:
        lab = ["codec", "transport"]
        conns_open = GaugeMetricFamily(
            "gateway_connections_open", "Open device connections", labels=lab
        )
        conns = CounterMetricFamily(
            "gateway_connections", "Device connections accepted", labels=lab
        )
        refused = CounterMetricFamily(
            "gateway_connections_closed_by_gateway",
            "Connections the gateway refused or closed, by reason",
            labels=[*lab, "reason"],
        )
        frames = CounterMetricFamily("gateway_frames", "Frames received", labels=lab)
        records = CounterMetricFamily("gateway_records", "Parsed records produced", labels=lab)
        bytes_in = CounterMetricFamily(
            "gateway_received_bytes", "Bytes received from devices", labels=lab
        )
        decode = CounterMetricFamily(
            "gateway_decode_errors",
            "Frames kept raw that did not decode, by reason",
            labels=[*lab, "reason"],
        )
        rejects = CounterMetricFamily(
            "gateway_rejects",
            "Bytes or frames rejected by the codec, by reason",
            labels=[*lab, "reason"],
        )
        acks = CounterMetricFamily("gateway_acks", "Replies sent to devices", labels=lab)
        ack_latency = HistogramMetricFamily(
            "gateway_ack_latency_seconds", "Frame arrival to its ACK being written", labels=lab
        )
        for s in self._listeners():
            labels = [s.codec, s.transport]
            conns_open.add_metric(labels, s.connections_open)
            conns.add_metric(labels, s.connections_total)
            frames.add_metric(labels, s.frames)
            records.add_metric(labels, s.records)
            bytes_in.add_metric(labels, s.bytes_in)
            acks.add_metric(labels, s.acks)
            s.ack_latency.add_to(ack_latency, labels)
            for family, counter in (
                (refused, s.refused),
                (decode, s.decode_errors),
                (rejects, s.rejects),
            ):
                for reason, n in counter.items():
                    family.add_metric([*labels, reason], n)
        yield from (
            conns_open,
            conns,
            refused,
            frames,
            records,
            bytes_in,
            decode,
            rejects,
            acks,
            ack_latency,
        )

        yield GaugeMetricFamily(
            "gateway_buffered_bytes",
            "Bytes accepted and not yet written",
            value=self._flow.buffered_bytes,
        )
        yield GaugeMetricFamily(
            "gateway_paused",
            "1 while every reader is paused (memory budget full)",
            value=int(self._flow.paused),
        )
        yield CounterMetricFamily(
            "gateway_paused_seconds",
            "Time spent with readers paused",
            value=self._flow.paused_seconds,
        )
        lab = ["stream"]
        batches = CounterMetricFamily("gateway_sink_batches", "Batches written", labels=lab)
        sink_records = CounterMetricFamily("gateway_sink_records", "Records written", labels=lab)
        sink_bytes = CounterMetricFamily("gateway_sink_bytes", "Bytes written", labels=lab)
        errors = CounterMetricFamily(
            "gateway_sink_errors", "Failed batch writes (retried)", labels=lab
        )
        dead = CounterMetricFamily(
            "gateway_sink_dead_letters",
            "Records given up on and dead-lettered (their frames were not ACKed)",
            labels=lab,
        )
        latency = HistogramMetricFamily(
            "gateway_sink_write_seconds", "Batch write latency", labels=lab
        )
        for sink in self._sinks:
            batches.add_metric([sink.stream], sink.batches)
            sink_records.add_metric([sink.stream], sink.records)
            sink_bytes.add_metric([sink.stream], sink.bytes)
            errors.add_metric([sink.stream], sink.errors)
            dead.add_metric([sink.stream], sink.dead_letters)
            sink.write_latency.add_to(latency, [sink.stream])
        yield from (batches, sink_records, sink_bytes, errors, dead, latency)


def serve_metrics(
    registry: CollectorRegistry, host: str, port: int
) -> tuple[str, int, Callable[[], None]]:
    """Start the HTTP endpoint; returns the bound address and a function that stops it."""
    server, thread = start_http_server(port, host, registry=registry)
    bound_host, bound_port = server.server_address[:2]

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return str(bound_host), int(bound_port), stop
