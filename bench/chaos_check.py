"""The chaos run's checker. It trusts nothing inside the system: it reads what the clients saw
(the fleets' ACK logs, the webhook's log of what arrived) and what the stores hold (the journal's
raw/ and parsed/ segments, whole lines only; the Kinesis streams, deaggregated by the stock
library), plus the run's own samples of the gateway's /proc and exits.

A frame the fleet saw ACKed is *lost* when its raw record or its readings are missing from the
journal or from Kinesis. A frame's readings are ``<raw_id>-0`` … ``-<n-1>``: complete when none
is missing below the highest present (one complete copy is enough). A *duplicate* is a further
copy of a record; every copy of a frame must carry one id. Each ACK is given the time the run
first saw its log line (the fleet's log is buffered: up to about a second late at these rates).
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

from parser.records import raw_record_id
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.harness import user_records

RATE_WINDOW_S = 2.0  # a recovered ACK rate holds over this long (samples: every second)
PRE_FAULT_S = 10.0  # the pre-fault rate: this long before the fault starts
RECOVERED_SHARE = 0.9
# A frame ACKed this long after a fault ended still counts as the fault's (log lag, backlog).
AFTER_FAULT_S = 10.0
EVB1_FAULT, GT06_ALARM = 0x03, 0x16
EVB1_CODES = {0x0101: "battery_overtemp", 0x0102: "isolation_fault"}  # notify/settings.py defaults
GATEWAY_SOURCES = ("tcp", "mqtt")  # ACKed by the gateway itself (bridge: by broker A)


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


def fault_frames(frames: list[Frame]) -> list[tuple[Frame, str | None]]:
    """ACKed frames that report a device fault, with the notification code expected (None: any
    but low_soc), read from the frames as the protocols define them: EVB1 FAULT (type byte 3,
    code at byte 12), GT06 alarm packets (protocol 0x16). Teltonika panic records would need a
    Codec 8 decoder: not checked."""
    found = []
    for frame in frames:
        data = bytes.fromhex(frame.payload)
        if frame.codec == "evb1" and len(data) > 13 and data[3] == EVB1_FAULT:
            code = int.from_bytes(data[12:14], "big")
            found.append((frame, EVB1_CODES.get(code)))
        elif frame.codec == "gt06" and len(data) > 3 and data[3] == GT06_ALARM:
            found.append((frame, None))
    return found


def check_notifications(frames: list[Frame], notes: list[dict[str, Any]]) -> dict[str, Any]:
    opens = [n for n in notes if n.get("state") == "open"]
    open_raw = {n["raw_id"] for n in opens}
    open_codes: dict[str, set[str]] = defaultdict(set)
    for n in opens:
        open_codes[n["device_id"]].add(n["code"])
    missing = []
    faults = fault_frames(frames)
    for frame, code in faults:
        raw_id = raw_record_id(frame.device_id, frame.codec, bytes.fromhex(frame.payload))
        codes = open_codes.get(frame.device_id, set())
        if raw_id in open_raw or (code in codes if code else bool(codes - {"low_soc"})):
            continue
        missing.append({"device_id": frame.device_id, "codec": frame.codec, "code": code})
    ids_per_note: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for n in notes:
        ids_per_note[n["raw_id"], n["code"], n["state"]].add(n["id"])
    deliveries = Counter(n["id"] for n in notes)
    return {
        "fault_frames_acked": len(faults),
        "missing_open": missing,
        "webhook_received": len(notes),
        "webhook_duplicates": sum(c - 1 for c in deliveries.values()),
        "split_ids": sum(1 for ids in ids_per_note.values() if len(ids) > 1),
    }


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


class Rates:
    """The gateway's ACK rate over time, from the sampled line counts of its fleets' logs."""

    def __init__(self, obs: Observations) -> None:
        times = sorted({t for source in GATEWAY_SOURCES for t, _ in obs.acks.get(source, [])})
        self.times = times
        self.totals = [0] * len(times)
        for source in GATEWAY_SOURCES:
            samples = obs.acks.get(source, [])
            sample_t = [t for t, _ in samples]
            for i, t in enumerate(times):
                at = bisect.bisect_right(sample_t, t) - 1
                self.totals[i] += samples[at][1] if at >= 0 else 0

    def count(self, t: float) -> int:
        at = bisect.bisect_right(self.times, t) - 1
        return self.totals[at] if at >= 0 else 0

    def rate(self, t0: float, t1: float) -> float:
        """ACKs per second between the samples nearest ``t0`` and ``t1`` (at or before them)."""
        i0 = max(0, bisect.bisect_right(self.times, t0) - 1)
        i1 = bisect.bisect_right(self.times, t1) - 1
        if i1 <= i0:
            return 0.0
        return (self.totals[i1] - self.totals[i0]) / (self.times[i1] - self.times[i0])

    def back_to(self, rate: float, since: float, until: float) -> float | None:
        """The first sample at or after ``since`` from which the next RATE_WINDOW_S reach
        ``rate`` (None: none before ``until``)."""
        times, totals = self.times, self.totals
        for i in range(bisect.bisect_left(times, since), len(times)):
            j = bisect.bisect_left(times, times[i] + RATE_WINDOW_S)
            if j >= len(times) or times[j] > until:
                return None
            if (totals[j] - totals[i]) / (times[j] - times[i]) >= rate:
                return times[i]
        return None


def recovery(
    obs: Observations, rates: Rates, fault: FaultRun, baseline: float
) -> tuple[float | None, float]:
    """Seconds from the fault's end until the ACK rate over RATE_WINDOW_S is back to 90 % of
    before it (None: not within the run), and that reference rate: the rate over the 10 s
    before the fault, but no more than the warm-up's (a backlog drained just before would set
    the bar above the fleet's steady rate), and the warm-up's when those 10 s overlap a fault
    that stops ACKs or its first 30 s after."""
    pre0, pre1 = fault.began - PRE_FAULT_S, fault.began
    disturbed = pre0 < obs.warmup_end or any(
        other is not fault and other.stops_acks and other.began < pre1 and other.ended + 30.0 > pre0
        for other in obs.faults
    )
    reference = baseline if disturbed else min(baseline, rates.rate(pre0, pre1))
    back = rates.back_to(RECOVERED_SHARE * reference, fault.ended, obs.run_end)
    return (None if back is None else round(max(0.0, back - fault.ended), 1)), reference


def check(
    obs: Observations, stores: dict[str, Store], notes: list[dict[str, Any]]
) -> dict[str, Any]:
    frames = acked_frames(obs)
    lost: list[tuple[Frame, list[str]]] = []
    trimmed = 0  # shipped to Kinesis, then deleted from the journal to make room
    journal, kinesis = stores["journal"], stores["kinesis"]
    for frame in frames:
        where = [
            f"{name} {kind}"
            for name, store in stores.items()
            for kind, present in (
                ("raw", store.has_raw(frame)),
                ("parsed", store.has_parsed(frame)),
            )
            if not present
        ]
        if where and journal.trimmed and kinesis.has_raw(frame) and kinesis.has_parsed(frame):
            trimmed += 1
        elif where:
            lost.append((frame, where))
    dups = {id(f): sum(s.duplicates(f) for s in stores.values()) for f in frames}
    b = BridgeB.read(obs)
    b_lost = set(b.lost())
    rates = Rates(obs)
    baseline = rates.rate(obs.warmup_end / 3, obs.warmup_end)  # after the fleet connected
    rows = []
    for fault in obs.faults:
        lo, hi = fault.began, fault.ended + AFTER_FAULT_S
        during = [f for f in frames if lo <= f.acked_at <= hi]
        b_during = b.between(lo, hi)
        recovered_s, reference = recovery(obs, rates, fault, baseline)
        rss = [r for t, r, _ in obs.proc if fault.began <= t <= fault.ended + 5.0]
        rows.append(
            {
                "fault": fault.name,
                "start_s": round(fault.began, 1),
                "duration_s": round(fault.ended - fault.began, 1),
                "acked": sum(1 for f in frames if fault.began <= f.acked_at <= fault.ended)
                + len(b.between(fault.began, fault.ended)),
                "lost": sum(1 for f, _ in lost if lo <= f.acked_at <= hi)
                + sum(1 for seq in b_during if seq in b_lost),
                "duplicates": sum(dups[id(f)] for f in during) + b.duplicates(b_during),
                "reference_rate": round(reference, 1),
                "recovery_s": recovered_s,
                "max_rss_mb": round(max(rss), 1) if rss else None,
            }
        )
    max_rss = max((r for _, r, _ in obs.proc), default=0.0)
    max_fds = max((n for _, _, n in obs.proc), default=0)
    notifications = check_notifications(frames, notes)
    split = {name: store.split_ids() for name, store in stores.items()}
    split["broker-b"] = b.split_ids()
    unexpected = [{"t": round(t, 1), "status": s} for t, s, expected in obs.exits if not expected]
    failed_stops = [
        {"t": round(t, 1), "status": s}
        for t, s, expected in obs.exits
        if expected and s not in (0, -9)
    ]
    problems = []
    if lost:
        problems.append(f"{len(lost)} ACKed frames lost")
    if b_lost:
        problems.append(f"{len(b_lost)} messages A acknowledged never reached B")
    problems += [
        f"{r['fault']} at {r['start_s']} s not recovered" for r in rows if r["recovery_s"] is None
    ]
    if notifications["missing_open"]:
        problems.append(
            f"{len(notifications['missing_open'])} injected device faults never notified"
        )
    if notifications["split_ids"] or any(split.values()):
        problems.append(
            f"copies under different ids: {split}, notifications {notifications['split_ids']}"
        )
    if unexpected:
        problems.append(f"the gateway exited on its own: {unexpected}")
    if failed_stops:
        problems.append(f"a graceful stop exited non-zero: {failed_stops}")
    if max_rss > obs.rss_limit_mb:
        problems.append(f"RSS {max_rss:.0f} MB over the bound {obs.rss_limit_mb:.0f} MB")
    if max_fds > obs.fd_limit:
        problems.append(f"{max_fds} open fds over the bound {obs.fd_limit}")
    if not frames or not b.acked:
        problems.append("the fleet or the publisher on A saw nothing acknowledged")
    return {
        "faults": rows,
        "acked": len(frames) + len(b.acked),
        "acked_by_source": {**Counter(f.source for f in frames), "a-to-b": len(b.acked)},
        "lost": len(lost) + len(b_lost),
        "lost_on_b": sorted(b_lost)[:20],
        "lost_examples": [
            {
                "source": f.source,
                "codec": f.codec,
                "device_id": f.device_id,
                "acked_at": round(f.acked_at, 1),
                "missing_from": where,
            }
            for f, where in lost[:20]
        ],
        "duplicates": sum(dups.values()) + b.duplicates(b.acked),
        "journal_trimmed_shipped": trimmed,
        "ack_timeline": [[round(t, 1), rates.count(t)] for t in rates.times],
        "proc_timeline": [[round(t, 1), round(rss, 1), fds] for t, rss, fds in obs.proc],
        "split_ids": split,
        "notifications": notifications,
        "baseline_ack_rate": round(baseline, 1),
        "max_rss_mb": round(max_rss, 1),
        "rss_limit_mb": obs.rss_limit_mb,
        "max_fds": max_fds,
        "fd_limit": obs.fd_limit,
        "gateway_exits": [{"t": round(t, 1), "status": s, "expected": e} for t, s, e in obs.exits],
        "problems": problems,
    }


def table(report: dict[str, Any]) -> str:
    head = ("fault", "start s", "dur s", "ACKed", "lost", "dups", "recovery s", "max RSS MB")
    rows = [
        (
            r["fault"],
            f"{r['start_s']:.1f}",
            f"{r['duration_s']:.1f}",
            str(r["acked"]),
            str(r["lost"]),
            str(r["duplicates"]),
            "NOT" if r["recovery_s"] is None else f"{r['recovery_s']:.1f}",
            "-" if r["max_rss_mb"] is None else f"{r['max_rss_mb']:.0f}",
        )
        for r in report["faults"]
    ]
    rows.append(
        (
            "whole run",
            "",
            "",
            str(report["acked"]),
            str(report["lost"]),
            str(report["duplicates"]),
            "",
            f"{report['max_rss_mb']:.0f}",
        )
    )
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [head, *rows]
    ]
    return "\n".join(lines)
