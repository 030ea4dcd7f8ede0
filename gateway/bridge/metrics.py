"""Prometheus exposition of the bridge's counters (``gateway_bridge_*``).

Per route: received, forwarded, acknowledged, in flight, redelivered, rejected and the end-to-end
lag; per source: connected, reading paused, reconnects, unrouted and own copies dropped; per
destination: its journal series (unshipped bytes, messages journaled and shipped, age of the
oldest message out, write errors, end-to-end lag) and per connection: connected, reconnects,
publishes and the time its token bucket held publishes back (how the drain rate after an outage
is seen).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from gateway.bridge.service import Bridge


class BridgeCollector(Collector):
    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge

    def collect(self) -> Iterator[Any]:
        yield from self._routes()
        yield from self._sources()
        yield from self._destinations()
        yield from self._journals()

    def _routes(self) -> Iterator[Any]:
        lab = ["route"]

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"gateway_bridge_{name}", doc, labels=lab)

        received = counter("received", "Source messages taken by the route")
        forwarded = counter("forwarded", "Messages handed to the destination")
        acknowledged = counter("acknowledged", "Source messages acknowledged after delivery")
        redelivered = counter("redelivered", "Messages that arrived with the DUP flag")
        rejected = counter("rejected", "Messages that were not one frame (kept as errors)")
        in_flight = GaugeMetricFamily(
            "gateway_bridge_in_flight", "Messages taken and not yet acknowledged", labels=lab
        )
        lag = HistogramMetricFamily(
            "gateway_bridge_lag_seconds",
            "Publisher stamp (MQTT 5 sent-at-ms) or arrival to the source's acknowledgement",
            labels=lab,
        )
        for s in self._bridge.route_stats:
            labels = [s.route]
            received.add_metric(labels, s.received)
            forwarded.add_metric(labels, s.forwarded)
            acknowledged.add_metric(labels, s.acknowledged)
            redelivered.add_metric(labels, s.redelivered)
            rejected.add_metric(labels, s.rejected)
            in_flight.add_metric(labels, s.in_flight)
            s.lag.add_to(lag, labels)
        yield from (received, forwarded, acknowledged, redelivered, rejected, in_flight, lag)

    def _sources(self) -> Iterator[Any]:
        lab = ["source"]
        connected = GaugeMetricFamily(
            "gateway_bridge_source_connected", "1 while the source is connected", labels=lab
        )
        paused = GaugeMetricFamily(
            "gateway_bridge_source_reading_paused",
            "1 while the source's socket is not read (its inbox is full)",
            labels=lab,
        )
        pauses = CounterMetricFamily(
            "gateway_bridge_source_read_pauses",
            "Times the source's socket stopped being read",
            labels=lab,
        )
        reconnects = CounterMetricFamily(
            "gateway_bridge_source_reconnects", "Source connections lost or failed", labels=lab
        )
        unrouted = CounterMetricFamily(
            "gateway_bridge_unrouted", "Messages no route matched (acknowledged)", labels=lab
        )
        loops = CounterMetricFamily(
            "gateway_bridge_loops_dropped",
            "Copies this bridge had published itself, not forwarded again",
            labels=lab,
        )
        for source in self._bridge.sources:
            s = source.stats
            connected.add_metric([s.source], int(s.connected))
            paused.add_metric([s.source], int(s.reading_paused))
            pauses.add_metric([s.source], s.read_pauses)
            reconnects.add_metric([s.source], s.reconnects)
            unrouted.add_metric([s.source], s.unrouted)
            loops.add_metric([s.source], s.loops_dropped)
        yield from (connected, paused, pauses, reconnects, unrouted, loops)

    def _destinations(self) -> Iterator[Any]:
        lab = ["destination", "connection"]
        connected = GaugeMetricFamily(
            "gateway_bridge_destination_connected", "1 while the connection is up", labels=lab
        )
        reconnects = CounterMetricFamily(
            "gateway_bridge_destination_reconnects", "Connections lost or failed", labels=lab
        )
        published = CounterMetricFamily(
            "gateway_bridge_destination_publishes", "Publishes the endpoint confirmed", labels=lab
        )
        tokens = CounterMetricFamily(
            "gateway_bridge_destination_tokens", "Tokens taken from the rate bucket", labels=lab
        )
        throttled = CounterMetricFamily(
            "gateway_bridge_destination_throttled_seconds",
            "Delay the rate bucket imposed on publishes",
            labels=lab,
        )
        queued = GaugeMetricFamily(
            "gateway_bridge_destination_queued",
            "Messages waiting for a connection",
            labels=["destination"],
        )
        for pool in (s.pool for s in self._bridge.shippers.values()):
            queued.add_metric([pool.settings.name], pool.queued)
            for s in pool.stats:
                labels = [s.destination, str(s.connection)]
                connected.add_metric(labels, int(s.connected))
                reconnects.add_metric(labels, s.reconnects)
                published.add_metric(labels, s.published)
                tokens.add_metric(labels, s.bucket.taken)
                throttled.add_metric(labels, s.bucket.waited_s)
        yield from (connected, reconnects, published, tokens, throttled, queued)

    def _journals(self) -> Iterator[Any]:
        lab = ["destination"]

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"gateway_bridge_journal_{name}", doc, labels=lab)

        unshipped = GaugeMetricFamily(
            "gateway_bridge_journal_unshipped_bytes",
            "Journaled bytes the destination has not confirmed yet",
            labels=lab,
        )
        oldest = GaugeMetricFamily(
            "gateway_bridge_journal_oldest_unshipped_seconds",
            "Age of the oldest message published and not yet confirmed",
            labels=lab,
        )
        journaled = counter("messages", "Messages journaled for the destination")
        shipped = counter("shipped", "Journaled messages the destination confirmed")
        errors = counter("write_errors", "Journal writes that failed (retried)")
        deleted = counter("segments_deleted", "Shipped segments deleted")
        lag = HistogramMetricFamily(
            "gateway_bridge_destination_lag_seconds",
            "Publisher stamp (MQTT 5 sent-at-ms) or arrival to the destination's confirmation",
            labels=lab,
        )
        for name, shipper in self._bridge.shippers.items():
            unshipped.add_metric([name], shipper.unshipped_bytes())
            oldest.add_metric([name], shipper.oldest_unshipped_s())
            journaled.add_metric([name], shipper.outbox.messages_written)
            shipped.add_metric([name], shipper.shipped)
            errors.add_metric([name], shipper.outbox.write_errors)
            deleted.add_metric([name], shipper.segments_deleted)
            shipper.lag.add_to(lag, [name])
        yield from (unshipped, oldest, journaled, shipped, errors, deleted, lag)
