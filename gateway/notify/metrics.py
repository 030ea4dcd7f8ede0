"""Notification counters (plain ints, bumped per notification) and their Prometheus collector.

The ``code`` label is bounded: rule codes are configured, but protocol alarm codes come from the
devices (EVB1 has 65,536 of them), so past ``MAX_CODE_LABELS`` distinct codes the rest are
counted as ``other``. Never a device id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from gateway.common.stats import Histogram
from parser.rules import Notification

MAX_CODE_LABELS = 200
OTHER_CODE = "other"
LOCAL = "local"  # the delivery-latency label of the durable notifications/ write


class TargetStats:
    __slots__ = ("dead_letters", "delivered", "latency", "recovered", "retries")

    def __init__(self) -> None:
        self.delivered = 0
        self.retries = 0
        self.recovered = 0  # queued again at start from notifications/ (after a crash)
        self.dead_letters: Counter[str] = Counter()  # by reason
        self.latency = Histogram()  # frame arrival -> accepted by the target


class NotifyStats:
    def __init__(self, targets: list[str]) -> None:
        self.notifications: Counter[tuple[str, str, str]] = Counter()  # code, severity, state
        self.suppressed: Counter[str] = Counter()  # by code
        self.targets = {name: TargetStats() for name in (LOCAL, *targets)}
        self._codes: set[str] = set()

    def count(self, note: Notification) -> None:
        code = note.code
        if code not in self._codes:
            if len(self._codes) >= MAX_CODE_LABELS:
                code = OTHER_CODE
            else:
                self._codes.add(code)
        self.notifications[code, note.severity, note.state] += 1
        if note.suppressed:
            self.suppressed[code] += 1


class NotificationCollector(Collector):
    def __init__(
        self,
        stats: NotifyStats,
        queued: Callable[[], Mapping[str, int]],
        tracked_devices: Callable[[], int],
    ) -> None:
        self._stats = stats
        self._queued = queued
        self._tracked_devices = tracked_devices

    def collect(self) -> Iterator[Any]:
        s = self._stats
        notes = CounterMetricFamily(
            "gateway_notifications",
            "Notifications raised (suppressed ones included)",
            labels=["code", "severity", "state"],
        )
        for labels, n in s.notifications.items():
            notes.add_metric(list(labels), n)
        suppressed = CounterMetricFamily(
            "gateway_notifications_suppressed",
            "Notifications over the rate limit: recorded in notifications/, not sent",
            labels=["code"],
        )
        for code, n in s.suppressed.items():
            suppressed.add_metric([code], n)
        lab = ["target"]
        delivered = CounterMetricFamily(
            "gateway_notification_deliveries",
            "Notifications accepted by a target (local: durably written to notifications/)",
            labels=lab,
        )
        retries = CounterMetricFamily(
            "gateway_notification_retries", "Deliveries attempted again after a failure", labels=lab
        )
        dead = CounterMetricFamily(
            "gateway_notification_dead_letters",
            "Notifications a target never took, written to dead-letters/, by reason",
            labels=[*lab, "reason"],
        )
        recovered = CounterMetricFamily(
            "gateway_notifications_recovered",
            "Unsettled notifications queued again at start from notifications/ (after a crash)",
            labels=lab,
        )
        latency = HistogramMetricFamily(
            "gateway_notification_delivery_seconds",
            "Fault frame arrival to its notification being accepted by the target",
            labels=lab,
        )
        for name, t in s.targets.items():
            delivered.add_metric([name], t.delivered)
            retries.add_metric([name], t.retries)
            if name != LOCAL:
                recovered.add_metric([name], t.recovered)
            for reason, n in t.dead_letters.items():
                dead.add_metric([name, reason], n)
            t.latency.add_to(latency, [name])
        queue = GaugeMetricFamily(
            "gateway_notification_queue", "Notifications waiting for a target", labels=lab
        )
        for name, n in self._queued().items():
            queue.add_metric([name], n)
        yield from (notes, suppressed, delivered, retries, dead, recovered, latency, queue)
        yield GaugeMetricFamily(
            "gateway_notification_tracked_devices",
            "Devices whose rule state the engine holds (bounded by max_devices)",
            value=self._tracked_devices(),
        )
