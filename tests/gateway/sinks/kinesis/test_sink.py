"""The real gateway writing to real kinesalite (directly and through the fault proxy)."""

from __future__ import annotations

import base64
import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.gatewayproc import get, read_records, wait_for
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.fault_proxy import PUT_RECORDS, THROUGHPUT_EXCEEDED, FaultProxy
from tests.gateway.sinks.kinesis.harness import (
    read_dead_letters,
    simulate,
    start_gateway,
    user_records,
)


def acked_payloads(tmp: Path) -> list[str]:
    path = tmp / "acked.jsonl"
    return [json.loads(line)["payload"] for line in path.read_text().splitlines()]


def payload_hex(record: dict[str, Any]) -> str:
    return base64.b64decode(record["record"]["payload"]).hex()


def assert_acked_frames_in_both_streams(
    tmp: Path, kinesalite: Kinesalite, raw_stream: str, parsed_stream: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every ACKed frame has its raw record in the raw stream and its readings in the parsed one.

    A frame a device resent may be there twice (two raw ids); one complete copy is enough. Its
    readings are ``<raw_id>-0`` … ``-<n-1>``: none may be missing below the highest present.
    Returns the raw and the parsed user records.
    """
    raw = user_records(kinesalite, raw_stream)
    parsed = user_records(kinesalite, parsed_stream)
    raw_ids: dict[str, set[str]] = defaultdict(set)
    for r in raw:
        raw_ids[payload_hex(r)].add(r["record"]["id"])
    readings: dict[str, set[int]] = defaultdict(set)
    for p in parsed:
        readings[p["record"]["raw_id"]].add(int(p["record"]["id"].rpartition("-")[2]))
    acked = acked_payloads(tmp)
    assert acked
    not_raw = [a for a in acked if a not in raw_ids]
    assert not not_raw, f"{len(not_raw)} of {len(acked)} ACKed frames missing from the raw stream"
    not_parsed = [
        a
        for a in acked
        if not any(readings[i] and readings[i] == set(range(len(readings[i]))) for i in raw_ids[a])
    ]
    assert not not_parsed, (
        f"{len(not_parsed)} of {len(acked)} ACKed frames without their parsed records"
    )
    return raw, parsed


def test_fleet_into_kinesalite(
    tmp_path: Path, kinesalite: Kinesalite, make_stream: Callable[[int], str]
) -> None:
    raw_stream, parsed_stream = make_stream(4), make_stream(4)
    gw = start_gateway(tmp_path, kinesalite.endpoint, raw_stream, parsed_stream)
    try:
        sim = simulate(gw, tmp_path, 120, 5.0)
        out, _ = sim.communicate(timeout=90)
        summary = json.loads(out.decode().splitlines()[-1])
        assert gw.metric("gateway_kinesis_user_records_total") > 0
    finally:
        assert gw.stop() == 0
    assert summary["unacked"] == 0 and summary["acked"] > 300
    raw, _ = assert_acked_frames_in_both_streams(tmp_path, kinesalite, raw_stream, parsed_stream)
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
    gw = start_gateway(
        tmp_path,
        fault_proxy.url,
        raw_stream,
        parsed_stream,
        "[pipeline]\nhigh_water_bytes = 4194304\nlow_water_bytes = 2097152\n",
    )
    try:
        sim = simulate(gw, tmp_path, 90, 8.0)
        time.sleep(3.0)
        fault_proxy.update(throttle_requests=True)  # whole-request throttling for a while
        time.sleep(2.0)
        assert gw.metric("gateway_buffered_bytes") <= 4194304 + 256 * 1024
        fault_proxy.update(throttle_requests=False)
        out, _ = sim.communicate(timeout=90)
        summary = json.loads(out.decode().splitlines()[-1])
        assert gw.metric("gateway_kinesis_retries_total") > 0
        assert gw.metric("gateway_kinesis_failed_entries_total") > 0
        assert gw.metric("gateway_kinesis_dead_letters_total") == 0
    finally:
        assert gw.stop() == 0
    stats = fault_proxy.stats()
    assert stats.entries_failed_by_code and stats.throttled_requests > 0
    assert summary["acked"] > 90  # traffic flowed (how much depends on the machine's load)
    raw, _ = assert_acked_frames_in_both_streams(tmp_path, kinesalite, raw_stream, parsed_stream)
    # Failed entries were never stored (as on Kinesis), and only they were resent: no record twice.
    ids = [r["record"]["id"] for r in raw]
    assert len(ids) == len(set(ids))


# Each makes every PutRecords fail while it lasts, the way issue 13 item 1 saw the per-shard
# limiter stop sending for good: a run of 503s, or 200 answers with every entry throttled.
STALLING_FAULTS: dict[str, dict[str, Any]] = {
    "503s": {"unavailable_requests": True},
    "all-entries-throttled": {
        "fail_entries_ratio": 1.0,
        "fail_error_codes": (THROUGHPUT_EXCEEDED,),
    },
}
NO_FAULT = {"unavailable_requests": False, "fail_entries_ratio": 0.0}


@pytest.mark.parametrize("fault", STALLING_FAULTS)
def test_503s_or_an_all_throttled_answer_slow_large_calls_and_acks_resume(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
    fault: str,
) -> None:
    # One shard per stream: the backlog behind the failures goes to it in calls of hundreds of
    # ~650-byte parsed records, more than the throttled limiter's buckets held.
    raw_stream, parsed_stream = make_stream(1), make_stream(1)
    gw = start_gateway(
        tmp_path, fault_proxy.url, raw_stream, parsed_stream, "[health]\nsink_down_after_s = 2\n"
    )
    sim = simulate(gw, tmp_path, 150, 20.0)
    try:
        assert wait_for(lambda: gw.metric("gateway_kinesis_user_records_total") > 200, timeout=20)
        assert gw.health_url is not None
        readyz = gw.health_url + "/readyz"
        assert get(readyz)[0] == 200
        fault_proxy.update(**STALLING_FAULTS[fault])
        # Nothing is delivered: /readyz turns new devices away (a 200 answer with every entry
        # throttled looked healthy before), while a backlog builds behind the failing calls.
        assert wait_for(lambda: get(readyz)[0] == 503, timeout=15)
        assert wait_for(lambda: gw.metric("gateway_buffered_bytes") > 1_500_000, timeout=20)
        during = fault_proxy.stats()
        fault_proxy.reset_stats()
        fault_proxy.update(**NO_FAULT)
        assert wait_for(lambda: get(readyz) == (200, "ready\n"), timeout=20)
        out, _ = sim.communicate(timeout=90)
        summary = json.loads(out.decode().splitlines()[-1])
        assert gw.metric("gateway_kinesis_dead_letters_total") == 0
    finally:
        assert gw.stop() == 0
    assert summary["unacked"] == 0  # ACKs resumed: every frame sent was ACKed in the end
    assert read_dead_letters(gw.data_dir) == []
    assert_acked_frames_in_both_streams(tmp_path, kinesalite, raw_stream, parsed_stream)
    assert during.requests_by_target[PUT_RECORDS] >= 5  # several calls failed
    # The backlog left in calls of over 750 kB of records for the one shard (JSON, base64),
    # three times what the old limiter's bucket held after five cuts.
    assert fault_proxy.stats().largest_put_records_bytes > 1_000_000


def test_a_short_outage_then_the_backlog_goes_in_calls_over_a_shard_bucket(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
) -> None:
    raw_stream, parsed_stream = make_stream(1), make_stream(1)
    gw = start_gateway(tmp_path, fault_proxy.url, raw_stream, parsed_stream)
    sim = simulate(gw, tmp_path, 300, 20.0)
    try:
        assert wait_for(lambda: gw.metric("gateway_kinesis_user_records_total") > 200, timeout=20)
        fault_proxy.update(refuse_connections=True)
        # Down for a few seconds: until ~2 MB of parsed records wait for the one shard (the
        # old limiter never admitted a call over its 1.5 MiB bucket).
        assert wait_for(lambda: gw.metric("gateway_buffered_bytes") > 3_000_000, timeout=15)
        assert gw.metric("gateway_kinesis_request_errors_total") > 0
        fault_proxy.update(refuse_connections=False)
        out, _ = sim.communicate(timeout=90)
        summary = json.loads(out.decode().splitlines()[-1])
        assert gw.metric("gateway_kinesis_dead_letters_total") == 0  # nothing Expired
    finally:
        assert gw.stop() == 0
    assert summary["unacked"] == 0
    assert read_dead_letters(gw.data_dir) == []  # none Expired, not even at the stop
    assert_acked_frames_in_both_streams(tmp_path, kinesalite, raw_stream, parsed_stream)
    assert fault_proxy.stats().largest_put_records_bytes > 2_200_000  # > 1.6 MB of records


@pytest.mark.parametrize("outage_s", [60.0])
def test_kinesis_down_pauses_devices_and_recovers(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
    outage_s: float,
) -> None:
    raw_stream, parsed_stream = make_stream(2), make_stream(2)
    budget = 1048576
    gw = start_gateway(
        tmp_path,
        fault_proxy.url,
        raw_stream,
        parsed_stream,
        f"record_ttl_s = 300\n[pipeline]\nhigh_water_bytes = {budget}\n"
        f"low_water_bytes = {budget // 2}\n",
    )
    try:
        sim = simulate(gw, tmp_path, 200, outage_s + 12)
        time.sleep(3.0)
        fault_proxy.update(refuse_connections=True)
        assert wait_for(lambda: gw.metric("gateway_paused") == 1, timeout=outage_s / 2)
        assert gw.health_url is not None
        readyz = gw.health_url + "/readyz"
        # The NLB stops sending new devices here while the sink is down.
        assert wait_for(lambda: get(readyz)[0] == 503, timeout=15)
        assert "sink failing" in get(readyz)[1]
        deadline = time.monotonic() + outage_s - 3
        while time.monotonic() < deadline:
            assert gw.metric("gateway_buffered_bytes") <= budget + 256 * 1024
            time.sleep(2.0)
        fault_proxy.update(refuse_connections=False)
        assert wait_for(lambda: gw.metric("gateway_paused") == 0, timeout=30)
        assert wait_for(lambda: get(readyz) == (200, "ready\n"), timeout=15)
        out, _ = sim.communicate(timeout=120)
        summary = json.loads(out.decode().splitlines()[-1])
        assert gw.metric("gateway_kinesis_dead_letters_total") == 0
    finally:
        assert gw.stop() == 0
    assert summary["acked"] > 300
    assert_acked_frames_in_both_streams(tmp_path, kinesalite, raw_stream, parsed_stream)
    assert read_records(gw.data_dir, "errors") == []


def test_shutdown_with_kinesis_down_dead_letters_and_acks_nothing_unsent(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
) -> None:
    raw_stream, parsed_stream = make_stream(1), make_stream(1)
    gw = start_gateway(tmp_path, fault_proxy.url, raw_stream, parsed_stream)
    sim = simulate(gw, tmp_path, 60, 30.0)
    try:
        assert wait_for(lambda: gw.metric("gateway_kinesis_user_records_total") > 50, timeout=20)
        fault_proxy.update(refuse_connections=True)
        assert wait_for(lambda: gw.metric("gateway_kinesis_request_errors_total") > 0, timeout=10)
        started = time.monotonic()
        code = gw.stop()
        took = time.monotonic() - started
    finally:
        sim.terminate()
        sim.communicate(timeout=60)
    assert code == 0 and took < 25  # the default 20 s deadline, with what was pending dead-lettered
    dead = read_dead_letters(gw.data_dir)
    assert dead and {(d["target"], d["reason"]) for d in dead} == {("kinesis", "Expired")}
    fault_proxy.update(refuse_connections=False)
    # Every ACKed frame reached both streams …
    raw, parsed = assert_acked_frames_in_both_streams(
        tmp_path, kinesalite, raw_stream, parsed_stream
    )
    delivered = {payload_hex(r) for r in raw}
    dead_records = [(d["class"], d["record"]) for d in dead]
    dead_payloads = {base64.b64decode(r["payload"]).hex() for c, r in dead_records if c == "raw"}
    acked = set(acked_payloads(tmp_path))
    assert not acked & (dead_payloads - delivered)  # … nothing dead-lettered was ACKed …
    acked_ids = {r["record"]["id"] for r in raw if payload_hex(r) in acked}
    delivered_parsed = {p["record"]["id"] for p in parsed}
    lost_readings = [
        r["id"]
        for c, r in dead_records
        if c == "parsed" and r["raw_id"] in acked_ids and r["id"] not in delivered_parsed
    ]
    assert not lost_readings  # … and no reading of an ACKed frame was given up on
