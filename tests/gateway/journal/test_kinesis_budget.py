"""The journal's disk budget with a real gateway, Kinesis down behind the fault proxy. On a real
small disk (a tmpfs) free space runs down to ``journal.min_free_bytes``, every device is paused
and /readyz says why; retention keeps running and deletes nothing unshipped; once Kinesis is
back, shipping and retention free the disk and ingest resumes, nothing lost. The same with the
unshipped bytes reaching ``journal.max_bytes``: shipping alone makes room."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from gateway.journal.segments import list_segments
from gateway.sinks.shipping import RETENTION_CHECK_S
from tests.gateway.disks import mounted_tmpfs
from tests.gateway.gatewayproc import GatewayProcess, get, wait_for
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.fault_proxy import FaultProxy
from tests.gateway.sinks.kinesis.harness import (
    acked_count,
    assert_acked_frames_in_both_streams,
    assert_duplicates_share_ids,
    finish,
    journal_ids,
    kill_fleet,
    simulate,
    start_gateway,
    user_records,
)

DISK_BYTES = 24 * 1024 * 1024
MIN_FREE_BYTES = 16 * 1024 * 1024
MAX_BYTES = 2 * 1024 * 1024
# Small segments, so that retention has closed ones to consider; shipped ones go after 1 s.
SETTINGS = (
    "[sink.local]\nrotate_bytes = 262144\n"
    f"[journal]\nmin_free_bytes = {MIN_FREE_BYTES}\nretain_s = 1\n"
)


def wait_full(gw: GatewayProcess, readyz: str) -> str:
    """Wait for the budget to fill: every device paused, /readyz says why; its reason."""
    assert wait_for(lambda: gw.metric("gateway_paused") == 1, timeout=90)
    status, reason = get(readyz)
    assert status == 503 and reason.startswith("journal full: "), reason
    assert gw.metric("gateway_journal_full") == 1
    return reason


def assert_resumes(gw: GatewayProcess, readyz: str, tmp: Path, acked: int) -> None:
    """The budget has room again: devices are read, ACKed, and new ones welcome."""
    assert wait_for(lambda: gw.metric("gateway_paused") == 0, timeout=60)
    assert wait_for(lambda: get(readyz) == (200, "ready\n"), timeout=10)
    assert gw.metric("gateway_journal_full") == 0
    assert wait_for(lambda: acked_count(tmp) > acked, timeout=30)


def test_a_full_disk_pauses_devices_deletes_nothing_unshipped_and_ingest_resumes(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
) -> None:
    raw_stream, parsed_stream = make_stream(2), make_stream(2)
    with mounted_tmpfs(tmp_path / "disk", DISK_BYTES) as disk:
        data_dir = disk / "data"
        gw = start_gateway(
            tmp_path, fault_proxy.url, raw_stream, parsed_stream, SETTINGS, data_dir=data_dir
        )
        assert gw.health_url is not None
        readyz = gw.health_url + "/readyz"
        sim = simulate(gw, tmp_path, 120, 600.0)  # ended below
        try:
            assert wait_for(lambda: len(list_segments(data_dir / "raw", "raw")) > 1, timeout=60)
            first = list_segments(data_dir / "raw", "raw")[0].path
            # Retention at work: shipped segments go.
            assert wait_for(lambda: not first.exists(), timeout=3 * RETENTION_CHECK_S)
            assert gw.metric("gateway_paused") == 0

            fault_proxy.update(refuse_connections=True)
            assert "bytes free on the data directory" in wait_full(gw, readyz)
            shipped = {r["record"]["id"] for r in user_records(kinesalite, raw_stream)}
            unshipped = set(journal_ids(data_dir, "raw")) - shipped
            assert unshipped
            acked = acked_count(tmp_path)
            time.sleep(RETENTION_CHECK_S + 2)  # at least one retention pass while full
            assert gw.metric("gateway_paused") == 1
            assert acked_count(tmp_path) == acked  # nobody was read, nobody ACKed
            assert unshipped <= set(journal_ids(data_dir, "raw"))

            fault_proxy.update(refuse_connections=False)
            assert_resumes(gw, readyz, tmp_path, acked)
            summary = finish(sim, now=True)
            found = assert_acked_frames_in_both_streams(
                tmp_path, kinesalite, raw_stream, parsed_stream
            )
        finally:
            kill_fleet(sim)
            assert gw.stop() == 0
    assert summary["unacked"] == 0
    assert_duplicates_share_ids(found.raw)


def test_the_unshipped_bytes_budget_pauses_devices_until_shipping_catches_up(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
) -> None:
    raw_stream, parsed_stream = make_stream(2), make_stream(2)
    gw = start_gateway(
        tmp_path,
        fault_proxy.url,
        raw_stream,
        parsed_stream,
        f"[journal]\nmax_bytes = {MAX_BYTES}\n",
    )
    assert gw.health_url is not None
    readyz = gw.health_url + "/readyz"
    sim = simulate(gw, tmp_path, 120, 600.0)  # ended below
    try:
        assert wait_for(lambda: gw.metric("gateway_kinesis_user_records_total") > 200, timeout=30)
        assert gw.metric("gateway_paused") == 0
        fault_proxy.update(refuse_connections=True)
        assert "unshipped bytes (max_bytes)" in wait_full(gw, readyz)
        time.sleep(1.0)  # the frames read before the pause are ACKed
        acked = acked_count(tmp_path)
        time.sleep(3.0)
        assert gw.metric("gateway_paused") == 1
        assert acked_count(tmp_path) == acked  # nobody was read, nobody ACKed
        fault_proxy.update(refuse_connections=False)
        assert_resumes(gw, readyz, tmp_path, acked)
        summary = finish(sim, now=True)
        found = assert_acked_frames_in_both_streams(tmp_path, kinesalite, raw_stream, parsed_stream)
    finally:
        kill_fleet(sim)
        assert gw.stop() == 0
    assert summary["unacked"] == 0
    assert_duplicates_share_ids(found.raw)


def test_a_gateway_stopped_full_starts_paused_and_resumes_as_it_ships(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
) -> None:
    raw_stream, parsed_stream = make_stream(2), make_stream(2)
    budget = f"[journal]\nmax_bytes = {MAX_BYTES}\n"
    gw = start_gateway(tmp_path, fault_proxy.url, raw_stream, parsed_stream, budget)
    assert gw.health_url is not None
    sim = simulate(gw, tmp_path, 120, 600.0, drain_s=0)  # ended below
    try:
        assert wait_for(lambda: gw.metric("gateway_kinesis_user_records_total") > 200, timeout=30)
        fault_proxy.update(refuse_connections=True)
        wait_full(gw, gw.health_url + "/readyz")
        code = gw.stop()
    finally:
        gw.kill()  # if it never got the signal
        finish(sim, now=True)
    assert code == 0
    # Still down at the next start: the journal it finds is over budget, so nobody is read
    # until shipping makes room.
    after = start_gateway(tmp_path, fault_proxy.url, raw_stream, parsed_stream, budget)
    try:
        assert after.health_url is not None
        readyz = after.health_url + "/readyz"
        assert "unshipped bytes (max_bytes)" in wait_full(after, readyz)
        assert after.metric("gateway_journal_unshipped_bytes") >= MAX_BYTES
        fault_proxy.update(refuse_connections=False)
        assert wait_for(lambda: after.metric("gateway_paused") == 0, timeout=60)
        assert wait_for(lambda: get(readyz) == (200, "ready\n"), timeout=10)
        found = assert_acked_frames_in_both_streams(tmp_path, kinesalite, raw_stream, parsed_stream)
    finally:
        assert after.stop() == 0
    assert_duplicates_share_ids(found.raw)
