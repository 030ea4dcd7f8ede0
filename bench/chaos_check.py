"""The chaos run's checker: from what was observed (bench/chaos_observed.py), a frame the fleet
saw ACKed is *lost* when its raw record or its readings are missing from the journal or from
Kinesis (a frame the gateway deleted from the journal to make room counts when Kinesis has it);
every copy of a frame must carry one id; every injected device fault must reach each notification
target as an open notification; after each fault the ACK rate must come back; RSS and open fds
stay within bounds; the gateway exits only when the schedule stops it. Then the table.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from typing import Any

from chaos_observed import BridgeB, FaultRun, Frame, Observations, Store, acked_frames

from parser.records import raw_record_id

RATE_WINDOW_S = 2.0  # a recovered ACK rate holds over this long (samples: every second)
PRE_FAULT_S = 10.0  # the pre-fault rate: this long before the fault starts
RECOVERED_SHARE = 0.9
# A frame ACKed this long after a fault ended still counts as the fault's (log lag, backlog).
AFTER_FAULT_S = 10.0
EVB1_FAULT, GT06_ALARM = 0x03, 0x16
TELTONIKA_CODEC8, TELTONIKA_PANIC = 0x08, 2
EVB1_CODES = {0x0101: "battery_overtemp", 0x0102: "isolation_fault"}  # notify/settings.py defaults
GATEWAY_SOURCES = ("tcp", "mqtt")  # ACKed by the gateway itself (bridge: by broker A)


def fault_frames(frames: list[Frame]) -> list[tuple[Frame, str | None]]:
    """ACKed frames that report a device fault, with the notification code expected (None: any
    but low_soc), read from the frames as the protocols define them: EVB1 FAULT (type byte 3,
    code at byte 12), GT06 alarm packets (protocol 0x16), Teltonika Codec 8 packets holding a
    panic-priority record."""
    found = []
    for frame in frames:
        data = bytes.fromhex(frame.payload)
        if frame.codec == "evb1" and len(data) > 13 and data[3] == EVB1_FAULT:
            code = int.from_bytes(data[12:14], "big")
            found.append((frame, EVB1_CODES.get(code)))
        elif alarm(frame.codec, data):
            found.append((frame, None))
    return found


def alarm(codec: str, data: bytes) -> bool:
    """A GT06 alarm packet, or a Teltonika packet with a panic record (the gateway names
    their notifications by its own tables: any code but low_soc will do)."""
    if codec == "gt06":
        return len(data) > 3 and data[3] == GT06_ALARM
    return codec == "teltonika" and TELTONIKA_PANIC in teltonika_priorities(data)


def teltonika_priorities(packet: bytes) -> list[int]:
    """The priority of each AVL record of a Codec 8 packet (Teltonika's "Codec 8" page):
    preamble 0 (4 bytes), length (4), codec id 0x08, record count, then per record a timestamp
    (8), the priority (1), GPS (15), the event IO id (1), the IO count (1) and four groups of IO
    elements, each a count then (id, value) pairs with 1-, 2-, 4- and 8-byte values. Anything
    else (a login, a keep-alive, Codec 8E): none."""
    if len(packet) < 10 or packet[:4] != bytes(4) or packet[8] != TELTONIKA_CODEC8:
        return []
    priorities = []
    at = 10
    try:
        for _ in range(packet[9]):
            priorities.append(packet[at + 8])
            at += 8 + 1 + 15 + 2
            for size in (1, 2, 4, 8):
                count = packet[at]
                at += 1 + count * (1 + size)
    except IndexError:
        return []  # not a whole packet after all
    return priorities


def check_notifications(frames: list[Frame], notes: list[dict[str, Any]]) -> dict[str, Any]:
    """Of one target's notifications: the injected faults without an open one, the copies."""
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
        "received": len(notes),
        "duplicates": sum(c - 1 for c in deliveries.values()),
        "split_ids": sum(1 for ids in ids_per_note.values() if len(ids) > 1),
    }


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
    obs: Observations, stores: dict[str, Store], targets: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """The report: per fault and for the whole run; ``targets``: the notifications each
    notification target received."""
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
    notifications = {name: check_notifications(frames, notes) for name, notes in targets.items()}
    split = {name: store.split_ids() for name, store in stores.items()}
    split["broker-b"] = b.split_ids()
    split.update({name: n["split_ids"] for name, n in notifications.items()})
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
    problems += [
        f"{len(n['missing_open'])} injected device faults never notified to the {name}"
        for name, n in notifications.items()
        if n["missing_open"]
    ]
    if any(split.values()):
        problems.append(f"copies under different ids: {split}")
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
