"""Plain counters of the bridge, read by ``gateway.bridge.metrics`` at scrape time.

Labels come from the settings only (route, source and destination names, connection numbers),
never from topics or device ids, so their number is fixed by the configuration.
"""

from __future__ import annotations

from gateway.common.stats import LATENCY_BUCKETS_S, Histogram
from gateway.common.token_bucket import TokenBucket

# A backlog drained after an outage arrives minutes late: the lag buckets go on to an hour.
LAG_BUCKETS_S = (*LATENCY_BUCKETS_S, 60.0, 300.0, 900.0, 3600.0)


class RouteStats:
    __slots__ = (
        "acknowledged",
        "forwarded",
        "in_flight",
        "lag",
        "received",
        "redelivered",
        "rejected",
        "route",
    )

    def __init__(self, route: str) -> None:
        self.route = route
        self.received = 0
        self.forwarded = 0  # handed to the destination (pipeline accepted, PUBLISH sent)
        self.acknowledged = 0  # acknowledged to the source after the destination took it
        self.in_flight = 0
        self.redelivered = 0  # arrived with the DUP flag: the broker had sent it before
        self.rejected = 0  # not one frame of the codec: kept as a raw record and an error
        self.lag = Histogram(LAG_BUCKETS_S)


class SourceStats:
    __slots__ = (
        "connected",
        "loops_dropped",
        "read_pauses",
        "reading_paused",
        "reconnects",
        "source",
        "unrouted",
    )

    def __init__(self, source: str) -> None:
        self.source = source
        self.connected = False
        self.reading_paused = False  # its inbox is full: the socket is not read
        self.read_pauses = 0
        self.reconnects = 0
        self.unrouted = 0  # matched no route: acknowledged, counted and logged
        self.loops_dropped = 0  # carried this bridge's own mark: a copy it published itself


class ConnectionStats:
    """One connection of a destination pool."""

    __slots__ = ("bucket", "connected", "connection", "destination", "published", "reconnects")

    def __init__(self, destination: str, connection: int, bucket: TokenBucket) -> None:
        self.destination = destination
        self.connection = connection
        self.bucket = bucket
        self.connected = False
        self.reconnects = 0
        self.published = 0  # PUBACKed (QoS 1/2) or written (QoS 0)
