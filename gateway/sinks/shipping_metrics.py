"""Prometheus exposition of the journal and its shippers (``gateway_journal_*``,
``gateway_shipper_*``), read from :class:`Shipping` at scrape time.

Per stream (this process's series: each worker reports its own): the segments and their bytes
on disk, shipped or not; the unshipped bytes the disk budget counts, next to the budget itself.
Per shipper (``stream``, ``target``): its lag in bytes, records and age, and what it shipped.
Retries, throttles and PutRecords latency are the Kinesis sink's (``gateway_kinesis_*``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.journal.segments import Segment, list_segments
from gateway.journal.store import STREAMS
from gateway.sinks.shipping import Shipping

# Listing a stream's segments is a directory scan and a stat per segment (thousands with a day of
# retention): at most once a second, however many scrapers ask.
LISTING_TTL_S = 1.0


class ShippingCollector(Collector):
    def __init__(self, shipping: Shipping, clock: Callable[[], float] = time.monotonic) -> None:
        self._shipping = shipping
        self._clock = clock
        self._lock = threading.Lock()  # prometheus-client may serve two scrapes at once
        self._listed_at = -LISTING_TTL_S
        self._segments: dict[str, list[Segment]] = {}

    def _listing(self) -> dict[str, list[Segment]]:
        with self._lock:
            now = self._clock()
            if now - self._listed_at >= LISTING_TTL_S:
                journal = self._shipping.journal
                # A failing disk: the last listing, rather than no metrics at all.
                with contextlib.suppress(OSError):
                    self._segments = {
                        s: list_segments(journal.directory(s), journal.prefix(s)) for s in STREAMS
                    }
                self._listed_at = now
            return self._segments

    def collect(self) -> Iterator[Any]:
        shipping = self._shipping
        lab = ["stream"]
        size = GaugeMetricFamily(
            "gateway_journal_bytes",
            "Bytes of the journal's segments on disk (shipped or not), summed",
            labels=lab,
        )
        segments = GaugeMetricFamily(
            "gateway_journal_segments", "Segment files of the journal", labels=lab
        )
        unshipped = GaugeMetricFamily(
            "gateway_journal_unshipped_bytes",
            "Bytes journaled and not yet shipped by the slowest target (the disk budget counts "
            "their sum)",
            labels=lab,
        )
        for stream, listed in self._listing().items():
            size.add_metric([stream], sum(s.size for s in listed))
            segments.add_metric([stream], len(listed))
            unshipped.add_metric([stream], shipping.behind(stream))
        yield from (size, segments, unshipped)
        yield GaugeMetricFamily(
            "gateway_journal_budget_used_bytes",
            "What the disk budget counts: every stream's unshipped bytes and the bridge's",
            value=shipping.unshipped_bytes(),
        )
        yield GaugeMetricFamily(
            "gateway_journal_max_bytes",
            "The disk budget: unshipped bytes above which every reader pauses",
            value=shipping.settings.max_bytes,
        )
        yield GaugeMetricFamily(
            "gateway_journal_free_bytes",
            "Free bytes on the data directory's filesystem",
            value=shipping.free_bytes,
        )
        yield GaugeMetricFamily(
            "gateway_journal_full",
            "1 while the disk budget is full and every reader is paused",
            value=int(shipping.full),
        )
        yield CounterMetricFamily(
            "gateway_journal_segments_deleted",
            "Segments deleted by retention (every target passed them, older than retain_s)",
            value=shipping.segments_deleted,
        )
        yield from self._shippers()

    def _shippers(self) -> Iterator[Any]:
        lab = ["stream", "target"]

        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"gateway_shipper_{name}", doc, labels=lab)

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"gateway_shipper_{name}", doc, labels=lab)

        lag_bytes = gauge("lag_bytes", "Journal bytes the target has not confirmed yet")
        lag_records = gauge("lag_records", "Journal records the target has not confirmed yet")
        oldest = gauge(
            "oldest_unshipped_seconds",
            "How long the oldest record not yet shipped has waited (0: none)",
        )
        shipped_records = counter("shipped_records", "Records the target confirmed")
        shipped_bytes = counter("shipped_bytes", "Journal bytes the target confirmed")
        dead = counter(
            "dead_letters", "Records the target refused for good, written to dead-letters/"
        )
        for shipper in self._shipping.shippers:
            labels = [shipper.stream, shipper.target]
            lag_bytes.add_metric(labels, shipper.lag_bytes())
            lag_records.add_metric(labels, shipper.lag_records())
            oldest.add_metric(labels, shipper.oldest_unshipped_s())
            shipped_records.add_metric(labels, shipper.shipped_records)
            shipped_bytes.add_metric(labels, shipper.shipped_bytes)
            dead.add_metric(labels, shipper.dead_letters)
        yield from (lag_bytes, lag_records, oldest, shipped_records, shipped_bytes, dead)
