"""MQTT counters beyond the per-listener ones: messages by QoS, reason codes sent, sessions.

Plain ints on the hot path (as ``gateway.common.stats``); the collector builds metric families at
scrape time. Labels are bounded: QoS 0-2, packet type and reason-code names from the spec.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class MqttStats:
    __slots__ = ("publishes", "reason_codes", "sessions", "wills")

    def __init__(self) -> None:
        self.publishes = [0, 0, 0]  # PUBLISH packets received, by QoS
        # (packet, reason code name) of every non-success code sent: refused PUBLISHes,
        # SUBSCRIBEs and CONNECTs, and DISCONNECTs the gateway sent.
        self.reason_codes: Counter[tuple[str, str]] = Counter()
        self.sessions = 0  # live and kept sessions, set at scrape time by the listener
        self.wills = 0  # will messages stored (a connection ended without a DISCONNECT)


class MqttCollector(Collector):
    def __init__(self, stats: Callable[[], Iterable[tuple[str, MqttStats]]]) -> None:
        self._stats = stats  # (listener port label, its stats)

    def collect(self) -> Iterator[Any]:
        publishes = CounterMetricFamily(
            "gateway_mqtt_publishes", "PUBLISH packets received, by QoS", labels=["port", "qos"]
        )
        reasons = CounterMetricFamily(
            "gateway_mqtt_reason_codes",
            "Non-success reason codes sent to MQTT clients, by packet",
            labels=["port", "packet", "reason"],
        )
        wills = CounterMetricFamily(
            "gateway_mqtt_wills",
            "Will messages stored: connections that ended without a normal DISCONNECT",
            labels=["port"],
        )
        sessions = GaugeMetricFamily(
            "gateway_mqtt_sessions", "MQTT sessions live or kept for reconnects", labels=["port"]
        )
        for port, s in self._stats():
            for qos, count in enumerate(s.publishes):
                publishes.add_metric([port, str(qos)], count)
            for (packet, reason), count in s.reason_codes.items():
                reasons.add_metric([port, packet, reason], count)
            wills.add_metric([port], s.wills)
            sessions.add_metric([port], s.sessions)
        yield from (publishes, reasons, wills, sessions)
