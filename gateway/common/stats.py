"""Plain counters the hot path bumps; the Prometheus collector reads them at scrape time.

prometheus-client's labelled ``Counter.inc()`` takes a lock and costs ~0.3 µs; a frame touches
half a dozen counters, so the per-frame path increments plain ints here instead and
``gateway.ops.metrics`` turns them into metric families only when Prometheus asks.

Every package's metrics have this shape: plain counters (and :class:`Histogram`) bumped where
things happen, a ``prometheus_client`` collector that builds the families at scrape time, and
:meth:`Histogram.add_to` for the one conversion that is not a plain ``add_metric``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.core import HistogramMetricFamily

# Seconds: from sub-millisecond ACKs on an idle box to the multi-second tail of a stalled sink.
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class Histogram:
    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last slot is +Inf
        self.sum = 0.0

    def observe(self, value: float, count: int = 1) -> None:
        """``count`` observations of ``value`` (the replies of one read leave together)."""
        self.counts[bisect_left(self.buckets, value)] += count
        self.sum += value * count

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        """Add this histogram to ``family`` as the sample of ``labels`` (cumulative buckets)."""
        cumulative, buckets = 0, []
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(cumulative)))
        family.add_metric(labels, buckets, self.sum)


class ListenerStats:
    """Counters of one listener (one codec on one transport)."""

    __slots__ = (
        "ack_latency",
        "acks",
        "bytes_in",
        "codec",
        "connections_open",
        "connections_total",
        "decode_errors",
        "frames",
        "records",
        "refused",
        "rejects",
        "transport",
    )

    def __init__(self, codec: str, transport: str = "tcp") -> None:
        self.codec = codec
        self.transport = transport
        self.connections_open = 0
        self.connections_total = 0
        self.refused: Counter[str] = Counter()  # connection closed by us, by reason
        self.frames = 0
        self.records = 0
        self.bytes_in = 0
        self.decode_errors: Counter[str] = Counter()
        self.rejects: Counter[str] = Counter()
        self.acks = 0
        self.ack_latency = Histogram()


class SinkStats:
    """Counters of one output stream of the sink."""

    __slots__ = ("batches", "bytes", "dead_letters", "errors", "records", "stream", "write_latency")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.batches = 0
        self.records = 0
        self.bytes = 0
        self.errors = 0
        self.dead_letters = 0  # records given up on: their frames were not ACKed
        self.write_latency = Histogram()
