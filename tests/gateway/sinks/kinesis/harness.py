"""A real ``gateway run`` shipping to kinesalite: its settings file, a simulated fleet sending to
it, what the fleet saw ACKed, and what reached the streams (user records through the stock
deaggregator) or was dead-lettered. The sink, journal, raw-stream consumer and MQTT dead-letter
tests drive the gateway through it."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.journal.cursor import Cursor, cursor_path
from gateway.journal.segments import list_segments
from tests.gateway.gatewayproc import GATEWAY, GatewayProcess
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.parser.kpl_stock import stock_deaggregate

CODECS = ("teltonika", "gt06", "evb1")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDLOCALTEST",
    "AWS_SECRET_ACCESS_KEY": "local-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
ACKED_LOG = "acked.jsonl"
# Ample for shipping a backlog of tens of MB to kinesalite on a loaded machine.
SHIPPED_WITHIN_S = 120.0


def write_config(
    tmp: Path, endpoint: str, raw: str, parsed: str, extra: str = "", listener: str = ""
) -> Path:
    """The settings file: a port per codec (``listener``: more keys for each), Kinesis at
    ``endpoint`` with quick retries; ``extra`` goes last (inside ``[sink.kinesis]`` until it
    opens a table)."""
    config = tmp / "kinesis.toml"
    listeners = "".join(
        f"[[listeners]]\ncodec = '{c}'\nhost = '127.0.0.1'\nport = 0\n{listener}" for c in CODECS
    )
    config.write_text(
        listeners
        + "[pipeline.raw]\nmax_records = 5000\n"
        + "[pipeline.parsed]\nmax_records = 5000\n"
        + f"[sink.kinesis]\nraw = {{ name = '{raw}' }}\nparsed = {{ name = '{parsed}' }}\n"
        + f"endpoint_url = '{endpoint}'\nretry_first_s = 0.05\nretry_max_s = 1.0\n{extra}"
    )
    return config


def start_gateway(
    tmp: Path,
    endpoint: str,
    raw: str,
    parsed: str,
    extra: str = "",
    *,
    listener: str = "",
    data_dir: Path | None = None,
) -> GatewayProcess:
    """``gateway run`` on ``data_dir`` (default ``tmp/data``): start it again on the same
    directory to resume from its journal and cursors."""
    config = write_config(tmp, endpoint, raw, parsed, extra, listener)
    return GatewayProcess(data_dir or tmp / "data", codecs=(), config=config, env=AWS_ENV)


def simulate(
    gw: GatewayProcess,
    tmp: Path,
    devices: int,
    duration: float,
    *,
    rate: float = 2.0,
    drain_s: float | None = None,
) -> subprocess.Popen[bytes]:
    """A fleet sending to ``gw``'s ports, appending what it saw ACKed to ``tmp/acked.jsonl``
    (fleets one after another share it: the same devices again, with new frames). ``drain_s``:
    how long it waits for outstanding ACKs after the run or a SIGTERM (default: the ACK
    timeout and one second)."""
    targets = [a for c in CODECS for a in ("--target", f"{c}=127.0.0.1:{gw.ports[c]}")]
    drain = [] if drain_s is None else ["--drain", str(drain_s)]
    return subprocess.Popen(
        [
            GATEWAY,
            "simulate",
            "--codec",
            ",".join(CODECS),
            *targets,
            "--devices",
            str(devices),
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--seed",
            "11",
            "--ack-timeout",
            "10",
            *drain,
            "--acked-log",
            str(tmp / ACKED_LOG),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def finish(sim: subprocess.Popen[bytes], *, now: bool = False) -> dict[str, Any]:
    """The fleet's summary once it ended: by itself, or ``now`` (SIGTERM; its gateway may be
    gone). Its ACK log is complete then."""
    if now:
        sim.send_signal(signal.SIGTERM)
    out, _ = sim.communicate(timeout=90)
    summary: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    return summary


def kill_fleet(sim: subprocess.Popen[bytes]) -> None:
    """Put down a fleet a failing test left running (its ACK log is not needed any more)."""
    if sim.poll() is None:
        sim.kill()
        sim.communicate(timeout=10)


def acked_count(tmp: Path) -> int:
    """Frames the fleets saw ACKed so far (the log is buffered: it lags by up to 64 KiB)."""
    try:
        return (tmp / ACKED_LOG).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def acked_payloads(tmp: Path) -> list[str]:
    """The hex payload of every frame the fleets saw ACKed."""
    try:
        text = (tmp / ACKED_LOG).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line)["payload"] for line in text.splitlines()]


def journaled(gw: GatewayProcess, stream: str = "raw") -> float:
    """Records ``gw`` journaled in ``stream`` since it started."""
    return gw.metric("gateway_sink_records_total", stream=stream)


def payload_hex(record: dict[str, Any]) -> str:
    return base64.b64decode(record["record"]["payload"]).hex()


def user_records(kinesalite: Kinesalite, stream: str) -> list[dict[str, Any]]:
    """Every user record of the stream, deaggregated by the stock aws-kinesis-agg library."""
    out = []
    for record in kinesalite.read_all(stream):
        for key, _ehk, data in stock_deaggregate(record["Data"]):
            out.append(
                {
                    "shard": record["ShardId"],
                    "seq": record["SequenceNumber"],
                    "key": key,
                    "record": json.loads(data),
                }
            )
    return out


@dataclass(frozen=True, slots=True)
class Arrivals:
    """The user records of both streams, and the ACKed frames (hex) missing from them."""

    raw: list[dict[str, Any]]
    parsed: list[dict[str, Any]]
    not_raw: list[str]
    not_parsed: list[str]
    acked: int


def arrivals(tmp: Path, kinesalite: Kinesalite, raw_stream: str, parsed_stream: str) -> Arrivals:
    """Which ACKed frames have their raw record in the raw stream and all their readings in
    the parsed one. A frame's readings are ``<raw_id>-0`` … ``-<n-1>``: none may be missing
    below the highest present; a frame a device resent may be there twice, one complete copy
    is enough."""
    raw = user_records(kinesalite, raw_stream)
    parsed = user_records(kinesalite, parsed_stream)
    raw_ids: dict[str, set[str]] = defaultdict(set)
    for r in raw:
        raw_ids[payload_hex(r)].add(r["record"]["id"])
    readings: dict[str, set[int]] = defaultdict(set)
    for p in parsed:
        readings[p["record"]["raw_id"]].add(int(p["record"]["id"].rpartition("-")[2]))
    acked = acked_payloads(tmp)
    not_raw = [a for a in acked if a not in raw_ids]
    not_parsed = [
        a
        for a in acked
        if a in raw_ids
        and not any(readings[i] and readings[i] == set(range(len(readings[i]))) for i in raw_ids[a])
    ]
    return Arrivals(raw, parsed, not_raw, not_parsed, len(acked))


def assert_acked_frames_in_both_streams(
    tmp: Path,
    kinesalite: Kinesalite,
    raw_stream: str,
    parsed_stream: str,
    timeout: float = SHIPPED_WITHIN_S,
) -> Arrivals:
    """Every ACKed frame is in the raw stream and its readings in the parsed one, within
    ``timeout`` (shipping follows the ACKs: it may still be working off a backlog)."""
    deadline = time.monotonic() + timeout
    while True:
        found = arrivals(tmp, kinesalite, raw_stream, parsed_stream)
        complete = not found.not_raw and not found.not_parsed
        if complete or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    assert found.acked
    assert not found.not_raw, (
        f"{len(found.not_raw)} of {found.acked} ACKed frames missing from the raw stream"
    )
    assert not found.not_parsed, (
        f"{len(found.not_parsed)} of {found.acked} ACKed frames without their parsed records"
    )
    return found


def assert_duplicates_share_ids(records: list[dict[str, Any]]) -> int:
    """A frame stored twice (a resend, a call retried, a batch shipped again after a crash)
    is there under one raw id; returns how many records are such copies."""
    ids: dict[str, set[str]] = defaultdict(set)
    for r in records:
        ids[payload_hex(r)].add(r["record"]["id"])
    split = {payload: found for payload, found in ids.items() if len(found) > 1}
    assert not split, f"{len(split)} frames stored under more than one id, e.g. {split.popitem()}"
    return len(records) - len(ids)


def read_dead_letters(data_dir: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in (data_dir / "dead-letters").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]


def saved_cursor(data_dir: Path, stream: str) -> int | None:
    """The Kinesis shipper's saved offset in ``stream``'s journal (``gateway run``'s series)."""
    return Cursor(cursor_path(data_dir, stream, "kinesis")).load()


def journal_ids(data_dir: Path, stream: str, below: int | None = None) -> list[str]:
    """The ids of ``stream``'s journaled records (whole lines), those starting before the
    offset ``below`` if given."""
    ids: list[str] = []
    for segment in list_segments(data_dir / stream, stream):
        offset = segment.base
        with segment.path.open("rb") as file:
            data = file.read(segment.size)
        for line in data.split(b"\n")[:-1]:
            if below is not None and offset >= below:
                return ids
            ids.append(json.loads(line)["id"])
            offset += len(line) + 1
    return ids
