"""The one conversion every package's collector shares: a plain Histogram as a metric family."""

from __future__ import annotations

from prometheus_client.core import HistogramMetricFamily

from gateway.common.stats import Histogram


def test_a_histogram_is_exposed_with_cumulative_buckets_and_its_sum() -> None:
    h = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 7.0):
        h.observe(value)
    family = HistogramMetricFamily("gateway_x_seconds", "x", labels=["stream"])
    h.add_to(family, ["raw"])
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples == {
        ("gateway_x_seconds_bucket", "0.1"): 2.0,  # a bound is inclusive, as Prometheus' le
        ("gateway_x_seconds_bucket", "1.0"): 3.0,
        ("gateway_x_seconds_bucket", "+Inf"): 4.0,
        ("gateway_x_seconds_count", None): 4.0,
        ("gateway_x_seconds_sum", None): 7.65,
    }
    assert all(s.labels["stream"] == "raw" for s in family.samples)
