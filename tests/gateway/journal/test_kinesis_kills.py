"""SIGKILL of a real gateway shipping to kinesalite, then a start on the same data directory:
the journal is whole (a torn tail cut) and holds every frame a device saw ACKed; the shippers
resume from their saved cursors, so every ACKed frame reaches Kinesis, the records shipped
before the last save once, those after it maybe twice under the same ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from gateway.journal.segments import list_segments
from tests.gateway.disks import torn_lines
from tests.gateway.gatewayproc import GatewayProcess, unstored, wait_for
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.fault_proxy import FaultProxy
from tests.gateway.sinks.kinesis.harness import (
    acked_count,
    acked_payloads,
    assert_acked_frames_in_both_streams,
    assert_duplicates_share_ids,
    finish,
    journal_ids,
    journaled,
    read_dead_letters,
    saved_cursor,
    simulate,
    start_gateway,
)

KILLS = 4
TORN_TAIL_CUT = "cut the torn tail a crash left in the journal"


def assert_journal_whole(gw: GatewayProcess, tmp: Path) -> None:
    """At a start: whole lines only, and every frame ACKed so far journaled raw and parsed."""
    for stream in ("raw", "parsed"):
        assert torn_lines(gw.data_dir, stream) == [], stream
    acked = [bytes.fromhex(p) for p in acked_payloads(tmp)]
    assert unstored(gw.data_dir, acked) == {"raw": [], "parsed": []}


def kill_while_writing(tmp: Path, endpoint: str, raw_stream: str, parsed_stream: str) -> None:
    """Start the gateway on ``tmp/data`` (checking the journal), send it a heavy fleet and
    SIGKILL it in the middle of it."""
    gw = start_gateway(tmp, endpoint, raw_stream, parsed_stream)
    sim = None
    try:
        assert_journal_whole(gw, tmp)
        assert_torn_tails_cut(gw)
        sim = simulate(gw, tmp, 150, 600.0, rate=4.0, drain_s=0)
        assert wait_for(lambda: journaled(gw) > 2000, timeout=60)
    finally:
        gw.kill()
        if sim is not None:
            finish(sim, now=True)
    tear(gw.data_dir)


def tear(data_dir: Path) -> None:
    """What a crash in the middle of a batch leaves where the kill did not: half a line at the
    end of the raw journal, pages of zeros (the file grew, its data never reached the disk)
    at the end of the parsed one."""
    for stream, tail in (("raw", None), ("parsed", bytes(4096))):
        newest = list_segments(data_dir / stream, stream)[-1].path
        with newest.open("rb+") as file:
            lines = file.read().split(b"\n")
            file.write(tail or lines[-2][: len(lines[-2]) // 2])


def assert_torn_tails_cut(gw: GatewayProcess) -> None:
    """The start cut both tails ``tear`` left, when there was a journal to tear."""
    cut = {Path(e["file"]).parent.name for e in gw.events(TORN_TAIL_CUT)}
    assert cut == ({"raw", "parsed"} if journal_ids(gw.data_dir, "raw") else set())


def test_a_kill_during_an_outage_and_shipping_resumes_from_the_cursors(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
) -> None:
    raw_stream, parsed_stream = make_stream(2), make_stream(2)
    gw = start_gateway(tmp_path, fault_proxy.url, raw_stream, parsed_stream)
    sim = simulate(gw, tmp_path, 100, 600.0, drain_s=0)  # ended below
    try:
        assert wait_for(lambda: gw.metric("gateway_kinesis_user_records_total") > 500, timeout=30)
        fault_proxy.update(refuse_connections=True)
        before = journaled(gw)
        acked = acked_count(tmp_path)
        # Well into the outage: frames journaled, ACKed, not shipped.
        assert wait_for(lambda: journaled(gw) > before + 500, timeout=30)
        assert wait_for(lambda: acked_count(tmp_path) > acked, timeout=15)
    finally:
        gw.kill()
        finish(sim, now=True)
    cursors = {stream: saved_cursor(gw.data_dir, stream) for stream in ("raw", "parsed")}
    assert all(cursors.values()), cursors
    passed = journal_ids(gw.data_dir, "raw", below=cursors["raw"])
    assert passed
    fault_proxy.update(refuse_connections=False)
    after = start_gateway(tmp_path, fault_proxy.url, raw_stream, parsed_stream)
    try:
        assert_journal_whole(after, tmp_path)
        found = assert_acked_frames_in_both_streams(tmp_path, kinesalite, raw_stream, parsed_stream)
        # The backlog it found counted as lag, and shipping it brought the lag to 0.
        assert wait_for(lambda: after.metric("gateway_shipper_lag_records") == 0, timeout=10)
        assert after.metric("gateway_shipper_shipped_records_total", stream="raw") > 0
    finally:
        assert after.stop() == 0
    assert read_dead_letters(gw.data_dir) == []
    assert_duplicates_share_ids(found.raw)
    # The shipping resumed at the cursor: what it had passed went to Kinesis once, no more
    # often than the journal holds it (a device's resend journals a frame twice).
    in_kinesis = Counter(r["record"]["id"] for r in found.raw)
    in_journal = Counter(journal_ids(gw.data_dir, "raw"))
    assert [i for i in passed if in_kinesis[i] > in_journal[i]] == []


def test_repeated_kills_during_heavy_writes_lose_nothing_acked(
    tmp_path: Path, kinesalite: Kinesalite, make_stream: Callable[[int], str]
) -> None:
    raw_stream, parsed_stream = make_stream(2), make_stream(2)
    for _ in range(KILLS):
        kill_while_writing(tmp_path, kinesalite.endpoint, raw_stream, parsed_stream)
    last = start_gateway(tmp_path, kinesalite.endpoint, raw_stream, parsed_stream)
    try:
        assert_journal_whole(last, tmp_path)
        assert_torn_tails_cut(last)
        found = assert_acked_frames_in_both_streams(tmp_path, kinesalite, raw_stream, parsed_stream)
    finally:
        assert last.stop() == 0
    assert read_dead_letters(last.data_dir) == []
    assert_duplicates_share_ids(found.raw)
