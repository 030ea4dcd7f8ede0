"""Counters of a simulated fleet, ACK latency percentiles and the summary the command prints."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

# Log-spaced latency buckets, 1 % wide, from 1 us to ~100 s: percentiles within 1 % in bounded
# memory, however many frames a soak test ACKs.
_RATIO = 1.01
_LOG_RATIO = math.log(_RATIO)
_FLOOR_S = 1e-6
_BUCKETS = 1_900

# What the summary line starts with, in this order (the documented contract of the command).
SUMMARY_KEYS = (
    "devices",
    "sent",
    "acked",
    "resent",
    "unacked",
    "connect_errors",
    "ack_p50_ms",
    "ack_p99_ms",
)
# Counters summed over codecs, after the contract keys.
_EXTRA_COUNTERS = (
    "no_ack",
    "records",
    "unsent",
    "dropped",
    "faults",
    "logins",
    "login_refused",
    "disconnects",
    "stray_acks",
)

Journal = Callable[[str, str, bytes], None]
"""Called with (codec, device id, exact frame bytes)."""


class LatencyHistogram:
    __slots__ = ("count", "counts")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0

    def add(self, seconds: float) -> None:
        if seconds <= _FLOOR_S:
            index = 0
        else:
            index = min(_BUCKETS - 1, int(math.log(seconds / _FLOOR_S) / _LOG_RATIO) + 1)
        self.counts[index] += 1
        self.count += 1

    def merge(self, other: LatencyHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.count += other.count

    def percentile_ms(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) in milliseconds, or ``None`` with no samples."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                # Geometric middle of the bucket.
                seconds = _FLOOR_S * _RATIO ** (index - 0.5) if index else _FLOOR_S
                return round(seconds * 1000, 3)
        raise AssertionError("unreachable: the counts add up to count")


class CodecStats:
    """Counters of the devices of one codec.

    Frame counts: ``sent`` (first writes of data frames; logins are counted in ``logins``),
    ``no_ack`` (the part of ``sent`` that expects no reply: GT06 locations), ``acked``,
    ``resent`` (every rewrite), ``unacked`` (written, never ACKed; set at the end). Record counts
    (a Teltonika packet carries several): ``records`` (in sent frames), ``unsent`` (still in a
    unit's flash at the end) and ``dropped`` (pushed out of a full flash).
    """

    __slots__ = (
        "acked",
        "codec",
        "connect_errors",
        "disconnects",
        "dropped",
        "faults",
        "latency",
        "login_refused",
        "logins",
        "no_ack",
        "on_acked",
        "on_sent",
        "records",
        "resent",
        "sent",
        "stray_acks",
        "unacked",
        "unsent",
    )

    def __init__(
        self, codec: str, on_sent: Journal | None = None, on_acked: Journal | None = None
    ) -> None:
        self.codec = codec
        self.on_sent = on_sent
        self.on_acked = on_acked
        self.sent = self.acked = self.resent = self.unacked = self.no_ack = 0
        self.records = self.unsent = self.dropped = self.faults = 0
        self.connect_errors = self.logins = self.login_refused = self.disconnects = 0
        self.stray_acks = 0
        self.latency = LatencyHistogram()

    def counters(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in (*SUMMARY_KEYS[1:6], *_EXTRA_COUNTERS)}


def summary(
    devices: int, stats: Iterable[CodecStats], extra: dict[str, object]
) -> dict[str, object]:
    """The summary line: the contract keys first, then totals, ``by_codec`` and ``extra``."""
    per_codec = list(stats)
    latency = LatencyHistogram()
    totals: dict[str, int] = {}
    by_codec: dict[str, object] = {}
    for codec_stats in per_codec:
        latency.merge(codec_stats.latency)
        counters = codec_stats.counters()
        for key, value in counters.items():
            totals[key] = totals.get(key, 0) + value
        by_codec[codec_stats.codec] = {
            **counters,
            "ack_p50_ms": codec_stats.latency.percentile_ms(0.50),
            "ack_p99_ms": codec_stats.latency.percentile_ms(0.99),
        }
    out: dict[str, object] = {"devices": devices}
    out.update({key: totals.get(key, 0) for key in SUMMARY_KEYS[1:6]})
    out["ack_p50_ms"] = latency.percentile_ms(0.50)
    out["ack_p99_ms"] = latency.percentile_ms(0.99)
    out.update({key: totals.get(key, 0) for key in _EXTRA_COUNTERS})
    out.update(extra)
    out["by_codec"] = by_codec
    return out
