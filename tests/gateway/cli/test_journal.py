"""``gateway journal status`` as an operator runs it: the installed console script on a data
directory, JSON when piped, a table on a terminal, one line and exit 2 for a bad directory."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import msgspec

from gateway.journal.cursor import Cursor, cursor_path
from gateway.journal.segments import SegmentWriter
from gateway.journal.settings import LocalSinkSettings

GATEWAY = Path(sys.executable).with_name("gateway")


def journal_status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GATEWAY), "journal", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def make_data_dir(data_dir: Path) -> int:
    """raw with 3 records, 1 shipped to kinesis; errors with one, local-only. The raw lag."""
    settings = LocalSinkSettings(data_dir=data_dir, fsync="never")
    lines = [
        msgspec.json.encode({"id": f"r{i}", "received_at": "2026-01-01T00:00:00.000Z"}) + b"\n"
        for i in range(3)
    ]
    raw = SegmentWriter(data_dir / "raw", "raw", settings)
    raw.write(lines[0])
    shipped = raw.end
    raw.write(lines[1] + lines[2])
    Cursor(cursor_path(data_dir, "raw", "kinesis")).save(shipped)
    errors = SegmentWriter(data_dir / "errors", "errors", settings)
    errors.write(lines[0])
    for writer in (raw, errors):
        writer.close()
    return raw.end - shipped


def test_piped_it_prints_json_with_each_series_and_its_targets_lag(tmp_path: Path) -> None:
    lag_bytes = make_data_dir(tmp_path)
    result = journal_status("--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["data_dir"] == str(tmp_path)
    raw, errors = report["series"]
    assert (raw["series"], raw["segments"], raw["local_only"]) == ("raw", 1, False)
    [kinesis] = raw["targets"]
    assert (kinesis["target"], kinesis["lag_bytes"], kinesis["lag_records"]) == (
        "kinesis",
        lag_bytes,
        2,
    )
    assert kinesis["oldest_unshipped_s"] > 0
    assert (errors["series"], errors["local_only"], errors["targets"]) == ("errors", True, [])


def test_the_data_directory_comes_from_the_config_file(tmp_path: Path) -> None:
    make_data_dir(tmp_path / "data")
    config = tmp_path / "gateway.toml"
    config.write_text(f"[sink.local]\ndata_dir = '{tmp_path / 'data'}'\n")
    result = journal_status("--config", str(config))
    assert result.returncode == 0, result.stderr
    assert [s["series"] for s in json.loads(result.stdout)["series"]] == ["raw", "errors"]


def test_on_a_terminal_it_prints_a_table(tmp_path: Path) -> None:
    lag_bytes = make_data_dir(tmp_path)
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [str(GATEWAY), "journal", "status", "--data-dir", str(tmp_path)],
            stdout=terminal,
            stderr=subprocess.PIPE,
        )
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(timeout=60) == 0
    finally:
        os.close(controller)
    header, raw, errors = output.decode().splitlines()
    assert header.split() == ["SERIES", "SEGMENTS", "BYTES", "TARGET", "LAG", "RECORDS", "OLDEST"]
    # 2026-01-01 is days ago: the age in days and hours.
    assert re.fullmatch(rf"raw +1 +\d+ B +kinesis +{lag_bytes} B +2 +\d+d\d\dh", raw), raw
    assert re.fullmatch(r"errors +1 +\d+ B +\(local only\)", errors), errors


def test_a_missing_data_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = journal_status("--data-dir", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"gateway journal status: {tmp_path / 'nowhere'}: not a directory\n"
