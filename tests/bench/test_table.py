"""bench/table.py builds issue 17's table from the benches' JSON (``--no-run``): a row per measure
with its same-run baseline and ratio, each aim judged on the ratio or the value it names, rows of
an absent or failed bench "not measured" with the reason (and exit status 1), amqtt's row "not
measured" when mqtt.py had no amqtt (exit status 0: amqtt is optional)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CEILING = "raw-socket ceiling (bench/sink_server.py)"


def judged(measure: str, value: float, baseline: float, aim: str, met: bool | None) -> Any:
    return {"measure": measure, "value": value, "baseline": baseline, "aim": aim, "met": met}


def flood(gateway: float, baseline: float) -> dict[str, dict[str, float]]:
    return {"gateway": {"per_core": gateway}, "baseline": {"per_core": baseline}}


def decode_stage(rate: float) -> dict[str, dict[str, float]]:
    return {"decode + parsed JSON": {"frames_per_s": rate, "records_per_s": rate * 2}}


# The shape of what each bench writes with --json; only the figures the table reads.
RESULTS: dict[str, dict[str, Any]] = {
    "ingest": {
        "args": {"batch": 8, "idle": 10_000},
        "one_per_write": flood(350_000, 500_000),
        "batched": flood(300_000, 1_000_000),
        "idle_bytes_per_connection": {"gateway": 1536.0, "baseline": 1024.0},
    },
    "mqtt": {
        "args": {"publishers": 50, "window": 64, "amqtt_python": None},
        "msgs_per_s": {
            "gateway-accepted": 90_000,
            "gateway-delivered": 60_000,
            "mosquitto": 60_000,
        },
        "cpu": {"gateway-accepted": 0.9, "gateway-delivered": 1.0, "mosquitto": 0.2},
    },
    "bridge": {
        "medians": {
            "mosquitto": {"msgs": 20_000, "cpu": 0.25},
            "gateway-3.1.1": {"msgs": 10_000, "cpu": 1.0},
            "gateway-5": {"msgs": 30_000, "cpu": 1.0},
        }
    },
    "decode": {
        "baseline_per_s": 4_000_000,
        "codecs": {
            "evb1": decode_stage(500_000),
            "teltonika": decode_stage(100_000),
            "gt06": decode_stage(350_000),
        },
    },
    "kinesis": {"user_records_per_s": {"aggregated_lean": 200_000, "aggregated_botocore": 100_000}},
    "replay": {"records_per_s": {"replay": 400_000, "floor": 800_000}},
    "journal": {
        "rows": [
            judged("peak ingest (frames/s)", 9_000, 0, "", None),
            judged("ACK p99, journaled vs fsync p99 (ms)", 6.0, 3.0, "ratio <= 3", True),
        ]
    },
    "workers": {
        "rows": [
            judged("CPU per frame, --workers 2 vs --workers 1 (µs)", 12, 10, "ratio <= 1.1", False)
        ]
    },
}


def table(
    directory: Path, runs: Any = None, results: dict[str, Any] = RESULTS
) -> tuple[int, list[list[str]], str]:
    """Exit status, the table's rows as cells, and stderr of bench/table.py --no-run on
    ``directory`` holding ``results`` (and ``runs`` as its run.json)."""
    for bench, result in results.items():
        (directory / f"{bench}.json").write_text(json.dumps({"bench": bench, **result}))
    if runs is not None:
        (directory / "run.json").write_text(json.dumps(runs))
    markdown = directory / "perf.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "table.py"), "--dir", str(directory), "--no-run",
         "--markdown", str(markdown)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    lines = markdown.read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| measure")))
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start + 2 :]]
    assert done.stdout.rstrip().endswith(lines[-1])  # the same table printed
    return done.returncode, [r for r in rows if len(r) == 6], done.stderr


def by_measure(rows: list[list[str]], words: str) -> list[str]:
    [found] = [r for r in rows if words in r[0]]
    return found


def test_every_row_with_baseline_ratio_and_aim(tmp_path: Path) -> None:
    status, rows, _ = table(tmp_path)
    assert status == 0
    # 13 of the rows (bridge twice), one judged row each of journal.py and workers.py,
    # and beside each MQTT and bridge rate, per CPU-second
    assert len(rows) == 19
    one = by_measure(rows, "1 frame per write")
    assert one[1:] == ["350,000", f"{CEILING}: 500,000", "0.70", "ratio >= 0.7", "yes"]
    assert by_measure(rows, "8 frames per write")[3:] == ["0.30", "ratio >= 0.3", "yes"]
    durable = by_measure(rows, "durable ACK")
    assert durable[2:] == ["mosquitto (PUBACK from memory): 60,000", "1.00", "ratio >= 1", "yes"]
    assert by_measure(rows, "`accepted`: msg/s")[3:] == ["1.50", "ratio >= 1.5", "yes"]
    # Per CPU-second of the server: no aim; mosquitto at 20 % of a core did 300,000 per CPU-s.
    durable_per_core = rows[rows.index(durable) + 1]
    assert durable_per_core == [
        "same, msg per CPU-second of the server (100% busy)",
        "60,000",
        "mosquitto (20% busy): 300,000",
        "0.20",
        "",
        "",
    ]
    bridge_per_core = rows[rows.index(by_measure(rows, "MQTT 3.1.1")) + 1]
    assert bridge_per_core[2:4] == ["mosquitto's bridge (25% busy): 80,000", "0.12"]
    assert by_measure(rows, "MQTT 3.1.1")[3:] == ["0.50", "ratio >= 1", "no"]
    assert by_measure(rows, "MQTT 5")[3:] == ["1.50", "ratio >= 1", "yes"]
    # Aims on a rate are judged on the value, whatever the ratio to the floor.
    assert by_measure(rows, "EVB1 decode")[1] == "500,000"
    assert by_measure(rows, "EVB1 decode")[3:] == ["0.12", ">= 450,000", "yes"]
    assert by_measure(rows, "Teltonika")[1] == "200,000"  # records, not frames
    assert by_measure(rows, "Teltonika")[5] == "no"
    assert by_measure(rows, "GT06")[5] == "yes"  # the aim's bound itself
    kinesis = by_measure(rows, "Kinesis")
    assert kinesis[2:] == [
        "same through botocore's PutRecords: 100,000",
        "2.00",
        ">= 250,000",
        "no",
    ]
    assert by_measure(rows, "replay")[4:] == [">= 350,000", "yes"]
    rss = by_measure(rows, "RSS per idle")
    assert rss[1:] == [
        "1.50",
        "bench/sink_server.py (bare uvloop Protocol): 1.00",
        "1.50",
        "<= 1.5",
        "yes",
    ]
    # journal.py's and workers.py's own judgement, the baseline named without its unit.
    journaled = by_measure(rows, "journaled vs fsync")
    assert journaled[2:] == ["fsync p99: 3.00", "2.00", "ratio <= 3", "yes"]
    workers = by_measure(rows, "--workers 2")
    assert workers[2:] == ["--workers 1: 10.00", "1.20", "ratio <= 1.1", "no"]
    assert "peak ingest" not in " ".join(r[0] for r in rows)  # no aim: not the row
    amqtt = by_measure(rows, "vs amqtt")
    assert amqtt[1].startswith("not measured: no Python that imports amqtt")
    assert amqtt[4] == "ratio >= 10"


def test_a_failed_bench_leaves_its_rows_not_measured(tmp_path: Path) -> None:
    runs = {
        "started": "2026-12-07 10:00 UTC",
        "load_before": "1.00 1.50 2.00",
        "load_after": "2.00 1.50 1.00",
        "build_before": "pure Python",
        "build_after": "compiled (mypyc, 20 modules)",
        "benches": {
            "bridge": {
                "exit": 1,
                "error": "RuntimeError: nothing came through the bridge",
                "failed_before": ["IndexError: list index out of range"],
                "seconds": 60.0,
                "load_before": "1.00 1.50 2.00",
            }
        },
    }
    status, rows, stderr = table(tmp_path, runs)
    assert status == 1
    failed = "bench/bridge.py exited 1 (RuntimeError: nothing came through the bridge)"
    assert failed in stderr
    bridge = [r for r in rows if r[0].startswith("bridge")]
    assert [r[1] for r in bridge] == [f"not measured: {failed}"] * 2
    assert by_measure(rows, "durable ACK")[5] == "yes"  # the others still there
    text = (tmp_path / "perf.md").read_text()
    assert "1.00 1.50 2.00 before, 2.00 1.50 1.00 after" in text
    assert "bridge 60 s (load 1.00)" in text
    assert "parser build: pure Python at the start, compiled (mypyc, 20 modules) at the end" in text
    assert "bench/bridge.py failed first (IndexError: list index out of range), then ran" in text


def test_a_missing_json_or_figure_is_named(tmp_path: Path) -> None:
    only_idle = {**RESULTS["ingest"]}
    del only_idle["one_per_write"]  # as bench/ingest.py --only-idle writes it
    given = {bench: result for bench, result in RESULTS.items() if bench != "replay"}
    status, rows, stderr = table(tmp_path, results={**given, "ingest": only_idle})
    assert status == 1
    missing = f"no replay.json in {tmp_path}"
    assert by_measure(rows, "replay")[1] == f"not measured: {missing}"
    assert missing in stderr
    tcp = [r[1] for r in rows if r[0].startswith("TCP ingest")]
    assert tcp == ["not measured: ingest.json has no 'one_per_write'"] * 2
    assert by_measure(rows, "RSS per idle")[5] == "yes"  # ingest.json's other figure
