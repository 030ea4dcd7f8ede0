"""The real gateway shipping its journal to real kinesalite (directly and through the fault
proxy): what Kinesis does to the shipping, and that devices never wait for it (the ``journaled``
ACK policy: the default)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.gatewayproc import get, wait_for
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.fault_proxy import PUT_RECORDS, THROUGHPUT_EXCEEDED, FaultProxy
from tests.gateway.sinks.kinesis.harness import (
    acked_count,
    assert_acked_frames_in_both_streams,
    assert_duplicates_share_ids,
    finish,
    read_dead_letters,
    saved_cursor,
    simulate,
    start_gateway,
)


def test_fleet_into_kinesalite(
    tmp_path: Path, kinesalite: Kinesalite, make_stream: Callable[[int], str]
) -> None:
    raw_stream, parsed_stream = make_stream(4), make_stream(4)
    gw = start_gateway(tmp_path, kinesalite.endpoint, raw_stream, parsed_stream)
    try:
        summary = finish(simulate(gw, tmp_path, 120, 5.0))
        # Shipped from the journal, behind the ACKs: what a stop leaves waits for the next start.
        raw = assert_acked_frames_in_both_streams(
            tmp_path, kinesalite, raw_stream, parsed_stream, timeout=60
        ).raw
    finally:
        assert gw.stop() == 0
    assert summary["unacked"] == 0 and summary["acked"] > 300
    # Partition key = device id; a device's records stay on one shard, in arrival order.
    shards: dict[str, set[str]] = defaultdict(set)
    order: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in raw:
        device = r["record"]["device_id"]
        assert r["key"] == device
        shards[device].add(r["shard"])
        order[device].append((int(r["seq"]), raw.index(r)))
    assert all(len(s) == 1 for s in shards.values())
    for device, seqs in order.items():
        arrivals = [raw[i]["record"]["received_at"] for _, i in sorted(seqs)]
        assert arrivals == sorted(arrivals), device
    assert len({r["record"]["id"] for r in raw}) == len(raw), "no duplicates without failures"


def test_partial_failures_and_throttling_lose_nothing_acked(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
) -> None:
    raw_stream, parsed_stream = make_stream(2), make_stream(2)
    fault_proxy.update(fail_entries_ratio=0.3)
    gw = start_gateway(tmp_path, fault_proxy.url, raw_stream, parsed_stream)
    try:
        sim = simulate(gw, tmp_path, 90, 10.0)
        assert wait_for(lambda: gw.metric("gateway_kinesis_retries_total") > 0, timeout=20)
        fault_proxy.update(throttle_requests=True)  # whole-request throttling for a while
        acked = acked_count(tmp_path)
        # Devices keep getting ACKs meanwhile: the journal holds what Kinesis does not take.
        assert wait_for(lambda: fault_proxy.stats().throttled_requests > 5, timeout=15)
        assert wait_for(lambda: acked_count(tmp_path) > acked, timeout=15)
        fault_proxy.update(throttle_requests=False)
        summary = finish(sim)
        raw = assert_acked_frames_in_both_streams(
            tmp_path, kinesalite, raw_stream, parsed_stream
        ).raw
        assert gw.metric("gateway_kinesis_failed_entries_total") > 0
        assert gw.metric("gateway_kinesis_dead_letters_total") == 0
    finally:
        assert gw.stop() == 0
    stats = fault_proxy.stats()
    assert stats.entries_failed_by_code and stats.throttled_requests > 0
    assert summary["unacked"] == 0 and summary["acked"] > 90
    # Failed entries were never stored (as on Kinesis), and only they were resent: no record twice.
    ids = [r["record"]["id"] for r in raw]
    assert len(ids) == len(set(ids))


# Each makes every PutRecords fail while it lasts: a run of 503s, 200 answers with every entry
# throttled (issue 13 item 1 saw the per-shard limiter stop sending for good after them), and
# Kinesis unreachable.
STALLING_FAULTS: dict[str, dict[str, Any]] = {
    "503s": {"unavailable_requests": True},
    "all-entries-throttled": {
        "fail_entries_ratio": 1.0,
        "fail_error_codes": (THROUGHPUT_EXCEEDED,),
    },
    "unreachable": {"refuse_connections": True},
}
NO_FAULT = {"unavailable_requests": False, "fail_entries_ratio": 0.0, "refuse_connections": False}


@pytest.mark.parametrize("fault", STALLING_FAULTS)
def test_while_kinesis_takes_nothing_acks_go_on_then_the_backlog_goes_in_large_calls(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
    fault: str,
) -> None:
    # One shard per stream: the backlog goes to it in calls of thousands of ~650-byte parsed
    # records, more than a shard's limiter bucket (1.5 MiB) holds.
    raw_stream, parsed_stream = make_stream(1), make_stream(1)
    gw = start_gateway(tmp_path, fault_proxy.url, raw_stream, parsed_stream)
    sim = simulate(gw, tmp_path, 200, 25.0)
    try:
        assert wait_for(lambda: gw.metric("gateway_kinesis_user_records_total") > 200, timeout=20)
        assert gw.health_url is not None
        readyz = gw.health_url + "/readyz"
        assert get(readyz) == (200, "ready\n")
        fault_proxy.update(**STALLING_FAULTS[fault])
        journaled = gw.metric("gateway_sink_bytes_total", stream="parsed")
        acked = acked_count(tmp_path)

        def backlog_built() -> bool:
            # Nothing is delivered, and nobody notices: ready, not paused, ACKs flowing.
            assert get(readyz) == (200, "ready\n")
            assert gw.metric("gateway_paused") == 0
            return gw.metric("gateway_sink_bytes_total", stream="parsed") - journaled > 3_000_000

        assert wait_for(backlog_built, timeout=40, interval=0.5)
        assert acked_count(tmp_path) > acked
        during = fault_proxy.stats()
        fault_proxy.reset_stats()
        fault_proxy.update(**NO_FAULT)
        summary = finish(sim)
        found = assert_acked_frames_in_both_streams(tmp_path, kinesalite, raw_stream, parsed_stream)
        assert gw.metric("gateway_kinesis_dead_letters_total") == 0
    finally:
        assert gw.stop() == 0
    assert summary["unacked"] == 0
    assert read_dead_letters(gw.data_dir) == []
    assert_duplicates_share_ids(found.raw)
    # Several calls failed (or could not connect) …
    assert during.requests_by_target.get(PUT_RECORDS, 0) + during.refused_connections >= 5
    # … then the backlog left in calls of over 1.6 MB of records for the one shard (JSON,
    # base64): over its limiter bucket, which once capped every call.
    assert fault_proxy.stats().largest_put_records_bytes > 2_200_000


# Kinesis down for a stop: unreachable, or answering nothing (a call hangs until its timeout).
DOWN: dict[str, dict[str, Any]] = {
    "unreachable": {"refuse_connections": True},
    "hanging": {"delay_s": 120.0},
}


@pytest.mark.parametrize("down", DOWN)
def test_a_stop_with_kinesis_down_leaves_the_backlog_for_the_next_start(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
    down: str,
) -> None:
    raw_stream, parsed_stream = make_stream(1), make_stream(1)
    gw = start_gateway(tmp_path, fault_proxy.url, raw_stream, parsed_stream)
    sim = simulate(gw, tmp_path, 60, 30.0, drain_s=0)
    try:
        assert wait_for(lambda: gw.metric("gateway_kinesis_user_records_total") > 50, timeout=20)
        fault_proxy.reset_stats()
        fault_proxy.update(**DOWN[down])

        def met_the_fault() -> bool:
            stats = fault_proxy.stats()
            return stats.refused_connections + stats.requests_by_target.get(PUT_RECORDS, 0) > 0

        assert wait_for(met_the_fault, timeout=10)
        acked = acked_count(tmp_path)
        assert wait_for(lambda: acked_count(tmp_path) > acked, timeout=15)  # ACKed, unshipped
        started = time.monotonic()
        code = gw.stop()
        took = time.monotonic() - started
    finally:
        finish(sim, now=True)
    # Nothing waits for Kinesis at a stop, and nothing is given up on: it stays journaled.
    assert code == 0 and took < 15, took  # well within the default 20 s deadline
    assert read_dead_letters(gw.data_dir) == []
    assert saved_cursor(gw.data_dir, "raw") and saved_cursor(gw.data_dir, "parsed")
    after = start_gateway(tmp_path, kinesalite.endpoint, raw_stream, parsed_stream)
    try:
        found = assert_acked_frames_in_both_streams(tmp_path, kinesalite, raw_stream, parsed_stream)
    finally:
        assert after.stop() == 0
    assert read_dead_letters(gw.data_dir) == []
    # A call cut by the outage may have been stored, then shipped again: under the same ids.
    assert_duplicates_share_ids(found.raw)
