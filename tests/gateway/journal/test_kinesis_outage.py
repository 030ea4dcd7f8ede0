"""Kinesis unreachable behind the fault proxy, a real gateway and a simulated fleet: under the
default ``journaled`` policy devices do not notice (issue 15's acceptance, bounded to seconds;
the ten-minute outage is the chaos run's), under ``delivered`` their ACKs wait for Kinesis."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.gateway.gatewayproc import get, wait_for
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.fault_proxy import FaultProxy
from tests.gateway.sinks.kinesis.harness import (
    SHIPPED_WITHIN_S,
    acked_count,
    assert_acked_frames_in_both_streams,
    assert_duplicates_share_ids,
    finish,
    journal_ids,
    journaled,
    kill_fleet,
    read_dead_letters,
    simulate,
    start_gateway,
    user_records,
)

STREAMS = ("raw", "parsed")  # what goes to Kinesis
BEFORE_S = 8.0
OUTAGE_S = 20.0
# The fleet's ACK log is flushed every 64 KiB (a second or two of ACKs here): count over
# windows much longer than that.
WINDOW_S = 5.0


def acks_per_s(tmp: Path, seconds: float, check: Callable[[], None]) -> list[float]:
    """The fleet's ACK rate in each ``WINDOW_S`` of the next ``seconds``; ``check`` runs every
    second meanwhile."""
    rates = []
    started = time.monotonic()
    while time.monotonic() - started < seconds - WINDOW_S / 2:
        window_start, first = time.monotonic(), acked_count(tmp)
        while time.monotonic() - window_start < WINDOW_S:
            check()
            time.sleep(1.0)
        rates.append((acked_count(tmp) - first) / (time.monotonic() - window_start))
    return rates


def test_kinesis_unreachable_devices_keep_getting_acks_and_nothing_is_lost(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
) -> None:
    raw_stream, parsed_stream = make_stream(2), make_stream(2)
    gw = start_gateway(tmp_path, fault_proxy.url, raw_stream, parsed_stream)
    assert gw.health_url is not None
    readyz = gw.health_url + "/readyz"

    def unaware() -> None:
        assert gw.metric("gateway_paused") == 0
        assert get(readyz) == (200, "ready\n")

    sim = simulate(gw, tmp_path, 120, 600.0)  # ended below
    try:
        assert wait_for(lambda: acked_count(tmp_path) > 0, timeout=30)
        before = acks_per_s(tmp_path, BEFORE_S, unaware)
        fault_proxy.update(refuse_connections=True)
        time.sleep(1.0)  # a call in flight at the cut may have been counted
        shipped = gw.metric("gateway_kinesis_user_records_total")
        cut = {stream: journaled(gw, stream) for stream in STREAMS}
        during = acks_per_s(tmp_path, OUTAGE_S, unaware)
        assert gw.metric("gateway_kinesis_user_records_total") == shipped  # truly down
        assert fault_proxy.stats().refused_connections > 0
        # The operators' view: every record journaled since the cut is lag, the oldest waiting
        # since about then.
        for stream in STREAMS:
            lag = gw.metric("gateway_shipper_lag_records", stream=stream, target="kinesis")
            assert lag >= journaled(gw, stream) - cut[stream] > 0, stream
            oldest = gw.metric("gateway_shipper_oldest_unshipped_seconds", stream=stream)
            assert oldest > OUTAGE_S / 2, stream
        fault_proxy.update(refuse_connections=False)
        summary = finish(sim, now=True)
        found = assert_acked_frames_in_both_streams(tmp_path, kinesalite, raw_stream, parsed_stream)
        assert gw.metric("gateway_kinesis_dead_letters_total") == 0
        assert wait_for(lambda: gw.metric("gateway_shipper_lag_records") == 0, timeout=10)
        assert gw.metric("gateway_shipper_lag_bytes") == 0
        assert gw.metric("gateway_shipper_oldest_unshipped_seconds") == 0
    finally:
        kill_fleet(sim)
        assert gw.stop() == 0
    # ACKs went on at about the rate of before, in every window of the outage (the bound is
    # loose: a shared machine; the chaos run measures latency).
    assert all(rate > 0 for rate in during), during
    assert sum(during) / len(during) > 0.5 * sum(before) / len(before), (before, during)
    assert summary["unacked"] == 0
    assert read_dead_letters(gw.data_dir) == []
    assert_duplicates_share_ids(found.raw)


def test_under_delivered_acks_wait_for_kinesis(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
) -> None:
    raw_stream, parsed_stream = make_stream(1), make_stream(1)
    gw = start_gateway(
        tmp_path,
        fault_proxy.url,
        raw_stream,
        parsed_stream,
        listener="ack_policy = 'delivered'\n",
    )
    sim = simulate(gw, tmp_path, 60, 600.0)  # ended below
    try:
        assert wait_for(lambda: acked_count(tmp_path) > 0, timeout=30)
        fault_proxy.update(refuse_connections=True)
        assert wait_for(lambda: gw.metric("gateway_kinesis_request_errors_total") > 0, timeout=10)
        time.sleep(2.0)  # the ACKs of what Kinesis took before the cut are written
        acked = acked_count(tmp_path)
        before = journaled(gw)
        # Frames keep arriving and are journaled, and none is ACKed: past their ACK timeout
        # (10 s) the devices resend them, journaled again under the same ids.
        assert wait_for(lambda: journaled(gw) > before + 200, timeout=20)
        assert wait_for(lambda: resent(gw.data_dir), timeout=30, interval=1.0)
        assert acked_count(tmp_path) == acked
        fault_proxy.update(refuse_connections=False)
        summary = finish(sim, now=True)
        # An ACK meant delivered: every ACKed frame is in Kinesis already.
        found = assert_acked_frames_in_both_streams(
            tmp_path, kinesalite, raw_stream, parsed_stream, timeout=0
        )
    finally:
        kill_fleet(sim)
        assert gw.stop() == 0
    assert summary["unacked"] == 0  # the frames that waited were ACKed after the recovery
    assert acked_count(tmp_path) > acked
    assert read_dead_letters(gw.data_dir) == []
    assert assert_duplicates_share_ids(found.raw) > 0  # the resends, shipped too


def resent(data_dir: Path) -> bool:
    """Whether the raw journal holds a frame twice (a device resent it)."""
    ids = journal_ids(data_dir, "raw")
    return len(ids) > len(set(ids))


def test_under_delivered_a_stop_with_kinesis_down_leaves_the_waiting_frames_journaled(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
) -> None:
    raw_stream, parsed_stream = make_stream(1), make_stream(1)
    gw = start_gateway(
        tmp_path,
        fault_proxy.url,
        raw_stream,
        parsed_stream,
        listener="ack_policy = 'delivered'\n",
    )
    sim = simulate(gw, tmp_path, 60, 600.0, drain_s=0)  # ended below
    try:
        assert wait_for(lambda: acked_count(tmp_path) > 0, timeout=30)
        fault_proxy.update(refuse_connections=True)
        before = journaled(gw)
        assert wait_for(lambda: journaled(gw) > before + 200, timeout=20)  # waiting for Kinesis
        started = time.monotonic()
        code = gw.stop()
        took = time.monotonic() - started
    finally:
        gw.kill()  # if it never got the signal
        finish(sim, now=True)
    # The stop does not wait for Kinesis: the frames stay journaled, un-ACKed (their devices
    # resend them: the same ids), and nothing is dead-lettered.
    assert code == 0 and took < 15, took
    assert read_dead_letters(gw.data_dir) == []
    shipped = {r["record"]["id"] for r in user_records(kinesalite, raw_stream)}
    waiting = set(journal_ids(gw.data_dir, "raw")) - shipped
    assert waiting
    after = start_gateway(tmp_path, kinesalite.endpoint, raw_stream, parsed_stream)
    try:
        found = assert_acked_frames_in_both_streams(tmp_path, kinesalite, raw_stream, parsed_stream)
        assert wait_for(
            lambda: waiting <= {r["record"]["id"] for r in user_records(kinesalite, raw_stream)},
            timeout=SHIPPED_WITHIN_S,
            interval=1.0,
        )
    finally:
        assert after.stop() == 0
    assert_duplicates_share_ids(found.raw)
