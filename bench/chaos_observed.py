"""What the chaos run observed, read back for the checker (bench/chaos_check.py), which trusts
nothing inside the system: what the clients saw (the fleets' ACK logs; the webhook's, the SNS
queue's and broker B's logs of what arrived; the publisher's log of what broker A acknowledged)
and what the stores hold (the journal's raw/ and parsed/ segments, whole lines only; the Kinesis
streams, deaggregated by the stock library), plus the run's own samples of the gateway's /proc
and exits. Each ACK is given the time the run first saw its log line (within a second).

A frame's readings are ``<raw_id>-0`` … ``-<n-1>``: complete when none is missing below the
highest present (one complete copy is enough). A *duplicate* is a further copy of a record.
"""

from __future__ import annotations

import base64
import bisect
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.harness import user_records


@dataclass
class FaultRun:
    name: str
    start: float  # scheduled, seconds from the run's start
    duration: float
    began: float = -1.0  # when it actually started and ended
    ended: float = -1.0
    stops_acks: bool = False


@dataclass
class Observations:
    """What the run recorded besides the stores."""

    faults: list[FaultRun]
    acks: dict[str, list[tuple[float, int]]]  # source -> (t, lines in its ACK log so far)
    acked_logs: dict[str, Path]
    proc: list[tuple[float, float, int]]  # (t, RSS MB, open fds) of the running gateway
    exits: list[tuple[float, int, bool]]  # (t, status, expected)
    warmup_end: float
    run_end: float  # when the fleets were told to stop
    rss_limit_mb: float
    fd_limit: int
    wall_start: float  # time.time() at the run's start: the clients' logs carry wall times
    b_acked_log: Path  # seqs broker A PUBACKed for the bridge's route to B
    b_received_log: Path  # what reached B's subscriber


@dataclass
class Frame:
    source: str
    codec: str
    device_id: str
    payload: str  # hex
    acked_at: float


@dataclass
class Store:
    """One store's raw and parsed records, indexed for the checks."""

    raw_ids: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    raw_copies: Counter[tuple[str, str]] = field(default_factory=Counter)
    readings: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    parsed_copies: Counter[str] = field(default_factory=Counter)
    # Its oldest segments are gone: the gateway deletes shipped segments when the disk is short.
    trimmed: bool = False

    def add_raw(self, record: dict[str, Any]) -> None:
        key = (record["device_id"] or "", base64.b64decode(record["payload"]).hex())
        self.raw_ids[key].add(record["id"])
        self.raw_copies[key] += 1

    def add_parsed(self, record: dict[str, Any]) -> None:
        self.readings[record["raw_id"]].add(int(record["id"].rpartition("-")[2]))
        self.parsed_copies[record["id"]] += 1

    def has_raw(self, frame: Frame) -> bool:
        return (frame.device_id, frame.payload) in self.raw_ids

    def has_parsed(self, frame: Frame) -> bool:
        readings = self.readings
        return any(
            readings[i] and readings[i] == set(range(len(readings[i])))
            for i in self.raw_ids.get((frame.device_id, frame.payload), ())
        )

    def split_ids(self) -> int:
        """Frames stored under more than one id (must be none)."""
        return sum(1 for ids in self.raw_ids.values() if len(ids) > 1)

    def duplicates(self, frame: Frame) -> int:
        key = (frame.device_id, frame.payload)
        extra = self.raw_copies[key] - 1 if key in self.raw_copies else 0
        for raw_id in self.raw_ids.get(key, ()):
            extra += sum(self.parsed_copies[f"{raw_id}-{n}"] - 1 for n in self.readings[raw_id])
        return extra


def segments(data_dir: Path, stream: str) -> list[Path]:
    """``gateway run``'s segments of ``stream`` in offset order (``<stream>-<base>.jsonl``)."""
    return sorted((data_dir / stream).glob(f"{stream}-[0-9]*.jsonl"))


def journal_records(data_dir: Path, stream: str) -> Iterator[dict[str, Any]]:
    """Every whole line of every segment of ``stream`` (a line torn by a kill was never ACKed)."""
    for path in segments(data_dir, stream):
        for line in path.read_bytes().split(b"\n")[:-1]:
            yield json.loads(line)


def load_stores(data_dir: Path, kinesalite: Kinesalite, raw: str, parsed: str) -> dict[str, Store]:
    journal, kinesis = Store(), Store()
    for record in journal_records(data_dir, "raw"):
        journal.add_raw(record)
    for record in journal_records(data_dir, "parsed"):
        journal.add_parsed(record)
    journal.trimmed = any(
        int(paths[0].stem.rpartition("-")[2]) > 0
        for paths in (segments(data_dir, "raw"), segments(data_dir, "parsed"))
        if paths
    )
    for user in user_records(kinesalite, raw):
        kinesis.add_raw(user["record"])
    for user in user_records(kinesalite, parsed):
        kinesis.add_parsed(user["record"])
    return {"journal": journal, "kinesis": kinesis}


def acked_frames(obs: Observations) -> list[Frame]:
    frames = []
    for source, path in obs.acked_logs.items():
        samples = obs.acks.get(source, [])
        counts = [n for _, n in samples]
        lines = path.read_text().splitlines() if path.exists() else []
        for index, line in enumerate(lines):
            entry = json.loads(line)
            at = bisect.bisect_right(counts, index)
            acked_at = samples[at][0] if at < len(samples) else obs.run_end
            frames.append(
                Frame(source, entry["codec"], entry["device_id"], entry["payload"], acked_at)
            )
    return frames


def webhook_notes(log: Path) -> list[dict[str, Any]]:
    """The notifications the webhook took (answered 200)."""
    if not log.exists():
        return []
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [e["note"] for e in entries if e["status"] == 200 and "id" in e["note"]]


@dataclass
class BridgeB:
    """The bridge's MQTT route A -> B: seqs A acknowledged (with when), copies B delivered."""

    acked: dict[int, float]  # seq -> run time of its PUBACK
    received: dict[int, list[str | None]]  # seq -> the dedup id of every copy

    @classmethod
    def read(cls, obs: Observations) -> BridgeB:
        acked = {e["seq"]: e["t"] - obs.wall_start for e in read_jsonl(obs.b_acked_log)}
        received: dict[int, list[str | None]] = defaultdict(list)
        for e in read_jsonl(obs.b_received_log):
            received[e["seq"]].append(e["id"])
        return cls(acked, received)

    def lost(self) -> list[int]:
        return [seq for seq in self.acked if seq not in self.received]

    def duplicates(self, seqs: Iterable[int]) -> int:
        return sum(len(self.received.get(seq, [0])) - 1 for seq in seqs)

    def split_ids(self) -> int:
        return sum(1 for ids in self.received.values() if len(set(ids)) > 1 or None in ids)

    def between(self, lo: float, hi: float) -> list[int]:
        return [seq for seq, t in self.acked.items() if lo <= t <= hi]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
