"""``gateway replay``: history parsed exactly like live data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.gateway.gatewayproc import read_records
from tests.gateway.history.replays import CODECS, by_device, replay

ROOT = Path(__file__).resolve().parents[3]


def test_replay_of_a_live_run_is_identical_record_for_record(live: Path, tmp_path: Path) -> None:
    summary, _ = replay(str(live / "raw"), "--data-dir", str(tmp_path / "out"))
    live_parsed = read_records(live, "parsed")
    replayed = read_records(tmp_path / "out", "parsed")
    assert {r["codec"] for r in live_parsed} == set(CODECS)
    assert summary["parsed_records"] == len(live_parsed) == len(replayed)
    assert sorted(replayed, key=lambda r: r["id"]) == sorted(live_parsed, key=lambda r: r["id"])
    assert by_device(replayed) == by_device(live_parsed)  # per-device order too
    again, _ = replay(str(live / "raw"), "--data-dir", str(tmp_path / "out"), "--dry-run")
    assert (again["new"], again["changed"], again["unchanged"]) == (0, 0, len(live_parsed))


def test_firehose_files_gzip_and_plain_give_the_same_output(live: Path, tmp_path: Path) -> None:
    lines = [
        line
        for p in sorted((live / "raw").glob("*.jsonl"))
        for line in p.read_bytes().splitlines(True)
    ]
    half = len(lines) // 2
    objects = tmp_path / "s3" / "2026" / "11" / "26"
    objects.mkdir(parents=True)
    (objects / "ev-raw-1").write_bytes(gzip.compress(b"".join(lines[:half])))
    (objects / "ev-raw-2").write_bytes(b"".join(lines[half:]))
    replay(str(tmp_path / "s3"), "--data-dir", str(tmp_path / "out"))
    replayed = sorted(read_records(tmp_path / "out", "parsed"), key=lambda r: r["id"])
    assert replayed == sorted(read_records(live, "parsed"), key=lambda r: r["id"])


def test_bad_input_is_reported_with_file_and_line_and_skipped(live: Path, tmp_path: Path) -> None:
    good = [
        line
        for p in sorted((live / "raw").glob("*.jsonl"))
        for line in p.read_bytes().splitlines(True)
    ]
    unknown = json.loads(good[0])
    unknown["codec"] = "nmea"
    plain = tmp_path / "in" / "plain.jsonl"
    plain.parent.mkdir()
    plain.write_bytes(good[0] + b"{not json\n" + json.dumps(unknown).encode() + b"\n" + good[1])
    truncated = tmp_path / "in" / "cut.gz"
    truncated.write_bytes(gzip.compress(b"".join(good[2:40]))[:-30])
    summary, err = replay(str(tmp_path / "in"), "--data-dir", str(tmp_path / "out"))
    assert f"{plain}:2: not a raw record" in err
    assert f"{plain}:3: unknown codec 'nmea'" in err
    assert f"{truncated}:" in err and "damaged gzip data" in err
    assert summary["skipped"] == {"corrupt_line": 1, "unknown_codec": 1, "truncated_gzip": 1}
    assert summary["raw_records"] >= 3  # the good lines around the bad ones were replayed


def test_filters_select_devices_codecs_and_time(live: Path, tmp_path: Path) -> None:
    raw = read_records(live, "raw")
    device = next(r["device_id"] for r in raw if r["codec"] == "evb1")
    summary, _ = replay(str(live / "raw"), "--data-dir", str(tmp_path / "a"), "--device", device)
    assert {r["device_id"] for r in read_records(tmp_path / "a", "parsed")} == {device}
    summary, _ = replay(str(live / "raw"), "--data-dir", str(tmp_path / "b"), "--codec", "gt06")
    assert {r["codec"] for r in read_records(tmp_path / "b", "parsed")} == {"gt06"}
    summary, _ = replay(
        str(live / "raw"), "--data-dir", str(tmp_path / "c"), "--until", "2000-01-01"
    )
    assert summary["parsed_records"] == 0 and summary["filtered_out"] == summary["raw_records"]


def test_legacy_capture_replays_with_stable_ids(tmp_path: Path) -> None:
    capture = ROOT / "codecs" / "samples" / "evb1.hex"
    args = ["--capture", str(capture), "--device-id", "356307042441013", "--codec", "evb1"]
    first, _ = replay(*args, "--data-dir", str(tmp_path / "one"))
    second, _ = replay(*args, "--data-dir", str(tmp_path / "two"))
    one, two = read_records(tmp_path / "one", "parsed"), read_records(tmp_path / "two", "parsed")
    assert first["parsed_records"] == second["parsed_records"] == len(one) == 5
    assert one == two
    assert {r["device_id"] for r in one} == {"356307042441013"}


def test_a_capture_with_bad_frames_says_where_and_keeps_the_rest(tmp_path: Path) -> None:
    lines = (ROOT / "codecs" / "samples" / "evb1.hex").read_text().split()
    bad_crc = lines[1][:-2] + ("00" if lines[1][-2:] != "00" else "11")
    capture = tmp_path / "capture.hex"
    capture.write_text("\n".join([lines[0], bad_crc, *lines[2:], lines[2][:20]]) + "\n")
    summary, err = replay(
        "--capture", str(capture), "--device-id", "356307042441013", "--codec", "evb1",
        "--data-dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert f"{capture}:2: " in err  # the frame whose CRC fails
    assert f"{capture}: at its end: " in err  # the frame cut short on the last line
    assert summary["skipped"]["crc_mismatch"] == 1 and sum(summary["skipped"].values()) >= 2
    assert summary["parsed_records"] == len(lines) - 1
