"""The real gateway process under real disk faults, with devices sending all along: a full disk
(a tmpfs mounted by the test and filled by a ballast file) and write errors injected into the
running process with libfiu (Debian's fiu-utils: ``fiu-run -x`` preloads its POSIX wrappers,
``fiu-ctrl`` turns failure points on and off).

The promise under test: the gateway keeps running, stops ACKing and pauses its readers while the
disk fails, never leaves a torn line, and once the disk is back ACKs resume and every ACKed frame
is in raw/ and parsed/.

The journal writes its segments with ``pwrite`` (gateway/journal/segments.py), so libfiu's
``posix/io/rw/pwrite`` fails those writes alone: ``posix/io/rw/write`` would fail the event
loop's wake-up writes too (libuv aborts the process when one fails) and the log's.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.gateway.devices import Sender
from tests.gateway.disks import fill, mounted_tmpfs, torn_lines
from tests.gateway.gatewayproc import GatewayProcess, read_records, wait_for

FIU_RUN = shutil.which("fiu-run")
FIU_CTRL = shutil.which("fiu-ctrl")
needs_fiu = pytest.mark.skipif(
    FIU_RUN is None or FIU_CTRL is None,
    reason="fiu-run/fiu-ctrl not installed (Debian package fiu-utils, installed by make setup)",
)

# A small memory budget, so that what the devices send while the disk fails fills it and the
# readers pause: 4 devices with 512 frames in flight each hold ~450 KiB.
# min_free_bytes = 0: the journal's free-space budget would pause the readers before a write
# fails; these tests make writes fail, to prove what happens when they do (a disk filled faster
# than the budget looks, a failing device).
CONFIG = (
    "[pipeline]\nhigh_water_bytes = 262144\nlow_water_bytes = 131072\n"
    "[journal]\nmin_free_bytes = 0\n"
)


@contextlib.contextmanager
def devices(gw: GatewayProcess, imei: str, count: int, window: int) -> Iterator[list[Sender]]:
    """``count`` EVB1 units with ``window`` frames in flight each, IMEIs ``imei`` + serial."""
    senders = [Sender(gw.ports["evb1"], f"{imei}{i:04d}", window=window) for i in range(count)]
    for sender in senders:
        sender.start()
    try:
        yield senders
    finally:
        for sender in senders:
            sender.stop.set()
        for sender in senders:
            sender.join(15)


def acked(senders: list[Sender]) -> int:
    return sum(len(s.acked) for s in senders)


def failed_writes(gw: GatewayProcess) -> int:
    return len(gw.events("sink write failed; retrying"))


def acks_stopped(gw: GatewayProcess, senders: list[Sender]) -> bool:
    """True when nothing was ACKed while the sink failed three more writes."""
    before, failures = acked(senders), failed_writes(gw)
    return wait_for(lambda: failed_writes(gw) >= failures + 3, timeout=15) and (
        acked(senders) == before
    )


def survive_and_recover(
    gw: GatewayProcess, fault: Callable[[], object], repair: Callable[[], None]
) -> list[Sender]:
    """Break the disk under light load, load it heavily while broken, repair it, stop the
    gateway; check the promise at each step. Returns the devices, with what they got ACKed."""
    # A few frames in flight: small batches, which a buffered file held back (item 3).
    with devices(gw, "35630704246", count=2, window=2) as light:
        assert wait_for(lambda: acked(light) >= 100, timeout=20)
        fault()
        assert wait_for(lambda: failed_writes(gw) > 0 or gw.proc.poll() is not None, timeout=15)
        assert gw.proc.poll() is None, gw.raw_output[-1]  # it used to exit 70 here
        with devices(gw, "35630704247", count=4, window=512) as heavy:
            senders = light + heavy
            assert wait_for(lambda: acks_stopped(gw, senders), timeout=40)
            assert wait_for(lambda: gw.metric("gateway_paused") == 1, timeout=15)
            assert acks_stopped(gw, senders)  # still, with the readers paused
            assert gw.proc.poll() is None
            for stream in ("raw", "parsed"):
                assert torn_lines(gw.data_dir, stream) == []
            stalled = acked(senders)
            repair()
            assert wait_for(lambda: acked(senders) >= stalled + 200, timeout=20)
            for sender in senders:
                sender.stop.set()
            assert gw.stop() == 0
    return senders


def check_acked_frames_on_disk(gw: GatewayProcess, senders: list[Sender]) -> None:
    """Every ACKed frame has its raw record and its parsed record; no line is torn or doubled."""
    for stream in ("raw", "parsed"):
        assert torn_lines(gw.data_dir, stream) == []
    raw = read_records(gw.data_dir, "raw")
    parsed = read_records(gw.data_dir, "parsed")
    assert len({r["id"] for r in raw}) == len(raw)  # a retried batch was not written twice
    assert len({r["id"] for r in parsed}) == len(parsed)
    # Units send the same bytes for the same sequence number: tell them apart by IMEI.
    ids = {(r["device_id"], base64.b64decode(r["payload"])): r["id"] for r in raw}
    frames = [(s.imei, frame) for s in senders for frame in s.acked]
    assert frames and set(frames) <= ids.keys()
    assert {ids[frame] for frame in frames} <= {r["raw_id"] for r in parsed}


def failed_with(gw: GatewayProcess, code: int) -> bool:
    """Whether the sink logged a failed write for error ``code``."""
    events = gw.events("sink write failed; retrying")
    return any(e["error"].endswith(os.strerror(code)) for e in events)


def test_a_full_disk_pauses_ingest_and_every_acked_frame_is_kept_when_space_returns(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG)
    with mounted_tmpfs(tmp_path / "disk", 32 << 20) as disk:
        gw = GatewayProcess(disk / "data", codecs=("evb1",), config=config)
        try:
            senders = survive_and_recover(gw, lambda: fill(disk), (disk / "ballast").unlink)
        finally:
            gw.kill()
        assert failed_with(gw, errno.ENOSPC)
        check_acked_frames_on_disk(gw, senders)


def fiu_gateway(tmp_path: Path) -> tuple[GatewayProcess, Callable[[str], None]]:
    """The gateway under ``fiu-run -x``, and a function that sends it a fiu-ctrl command."""
    assert FIU_RUN is not None and FIU_CTRL is not None
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG)
    fifo = str(tmp_path / "fiu")
    gw = GatewayProcess(
        tmp_path / "data", codecs=("evb1",), config=config, launcher=(FIU_RUN, "-x", "-f", fifo)
    )

    def control(command: str) -> None:
        ctrl = [FIU_CTRL, "-f", fifo, "-c", command, str(gw.proc.pid)]
        subprocess.run(ctrl, check=True, timeout=10, capture_output=True)

    return gw, control


@needs_fiu
@pytest.mark.parametrize(
    ("point", "code"),
    [
        ("posix/io/rw/pwrite", errno.ENOSPC),
        ("posix/io/rw/pwrite", errno.EIO),
        ("posix/io/sync/fsync", errno.EIO),
    ],
)
def test_injected_write_errors_pause_ingest_and_lose_nothing_acked(
    tmp_path: Path, point: str, code: int
) -> None:
    gw, control = fiu_gateway(tmp_path)
    try:
        senders = survive_and_recover(
            gw,
            lambda: control(f"enable name={point},failinfo={code}"),
            lambda: control(f"disable name={point}"),
        )
    finally:
        gw.kill()
    assert failed_with(gw, code)
    check_acked_frames_on_disk(gw, senders)


@needs_fiu
def test_short_writes_cut_by_errors_never_leave_a_torn_or_doubled_line(tmp_path: Path) -> None:
    gw, control = fiu_gateway(tmp_path)
    try:
        with devices(gw, "35630704248", count=4, window=32) as senders:
            assert wait_for(lambda: acked(senders) >= 200, timeout=20)
            # Every pwrite takes part of what it is given, every other one fails: batches are
            # cut mid-line, rolled back and retried.
            control("enable name=posix/io/rw/pwrite/reduce")
            control(
                f"enable_random name=posix/io/rw/pwrite,probability=0.5,failinfo={errno.ENOSPC}"
            )
            failures = failed_writes(gw)
            assert wait_for(lambda: failed_writes(gw) >= failures + 10, timeout=30)
            control("disable name=posix/io/rw/pwrite")
            control("disable name=posix/io/rw/pwrite/reduce")
            resumed = acked(senders)
            assert wait_for(lambda: acked(senders) >= resumed + 200, timeout=20)
            for sender in senders:
                sender.stop.set()
            assert gw.stop() == 0
    finally:
        gw.kill()
    check_acked_frames_on_disk(gw, senders)
