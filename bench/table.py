"""Issue 17's performance table: every measure against its same-run baseline and the issue's aim.

Run: ``make bench``, or ``.venv/bin/python bench/table.py [--markdown bench/results/perf.md]
[--amqtt-python .bench-venv/bin/python] [--dir DIR [--no-run]]``.

Runs bench/decode.py, kinesis.py, replay.py, ingest.py, mqtt.py, bridge.py, journal.py and
workers.py one after another, each with ``--json`` into ``--dir`` (a temporary directory unless
given) and shorter windows than their own defaults, so the whole run takes about a quarter of an
hour; their own tables print as they go. Then one row per measure: its value, the baseline that
the same bench measured in the same run (what and its value), the ratio, the issue's aim and
whether it is met. An aim on a ratio is judged on the ratio, any other on the value. A bench that
fails runs once more; failed twice, or short of a figure, it leaves its rows "not measured" with
the reason, and the exit status 1.
``--markdown`` also writes the table with the machine it ran on (CPU, cores, kernel, Python,
commit, load average before and after: co-tenants share the cores, the ratios are same-run so
they hold, the rates move with the load). ``--no-run`` builds the table from the JSON already in
``--dir``.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import platform
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

# Shorter than each bench's own defaults (budget: the whole run in about 15 minutes), still a
# median of 3 interleaved runs wherever the bench interleaves.
BENCHES: dict[str, list[str]] = {
    "decode": ["--seconds", "0.5", "--runs", "3"],
    "kinesis": ["--seconds", "2", "--runs", "3"],
    "replay": ["--records", "200000", "--runs", "3"],
    "ingest": ["--runs", "3", "--seconds", "4", "--warmup", "1.5"],
    "mqtt": ["--runs", "3", "--seconds", "3"],
    "bridge": ["--runs", "3", "--seconds", "4"],
    "journal": ["--runs", "3", "--seconds", "3"],
    "workers": ["--runs", "3", "--seconds", "4"],
}
# A bench that fails runs once more: co-tenants can starve a latency probe of every ACK (its
# first failure is shown beside the table).
ATTEMPTS = 2
RUN_FILE = "run.json"  # when and under what load each bench ran, beside their JSON
UNIT = re.compile(r"\s*\([^)]*\)$")

Results = dict[str, Any]  # a bench's --json document

COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True, slots=True)
class Aim:
    """The issue's aim for a row: ``on`` (``ratio`` or ``value``) ``op`` ``threshold``."""

    on: Literal["ratio", "value"]
    op: Literal[">=", "<="]
    threshold: float

    def met(self, value: float, ratio: float | None) -> bool | None:
        subject = ratio if self.on == "ratio" else value
        return None if subject is None else COMPARE[self.op](subject, self.threshold)

    def __str__(self) -> str:  # as bench/journal.py and bench/workers.py write theirs
        return f"{'ratio ' if self.on == 'ratio' else ''}{self.op} {self.threshold:,g}"


@dataclass(frozen=True, slots=True)
class Row:
    measure: str
    value: float | None = None
    baseline_what: str = ""
    baseline: float | None = None
    aim: str = ""
    met: bool | None = None
    missing: str = ""  # why there is no value

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    def cells(self) -> list[str]:
        if self.missing:
            return [self.measure, f"not measured: {self.missing}", "", "", self.aim, ""]
        baseline = f"{self.baseline_what}: {number(self.baseline)}" if self.baseline_what else ""
        met = "" if self.met is None else ("yes" if self.met else "no")
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        return [self.measure, number(self.value), baseline, ratio, self.aim, met]


def number(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def row(measure: str, value: float, baseline_what: str, baseline: float, aim: Aim) -> Row:
    ratio = Row(measure, value, baseline_what, baseline).ratio
    return Row(measure, value, baseline_what, baseline, str(aim), aim.met(value, ratio))


def ingest_rows(r: Results) -> list[Row]:
    batched = r["args"]["batch"]
    rows = []
    for key, label, aim in (
        ("one_per_write", "1 frame per write", 0.70),
        ("batched", f"{batched} frames per write", 0.30),
    ):
        figures = r[key]
        rows.append(
            row(
                f"TCP ingest (EVB1, journaled), {label}: frames ACKed per CPU-second",
                figures["gateway"]["per_core"],
                "raw-socket ceiling (bench/sink_server.py)",
                figures["baseline"]["per_core"],
                Aim("ratio", ">=", aim),
            )
        )
    return rows


def idle_rows(r: Results) -> list[Row]:
    per_connection = r["idle_bytes_per_connection"]
    return [
        row(
            f"RSS per idle connection, {r['args']['idle']:,} EVB1 logged in (KB)",
            per_connection["gateway"] / 1024,
            "bench/sink_server.py (bare uvloop Protocol)",
            per_connection["baseline"] / 1024,
            Aim("value", "<=", 1.5),
        )
    ]


AMQTT_MISSING = "no Python that imports amqtt and uvloop (make bench builds .bench-venv)"


def per_core(
    measure: str, rate: float, cpu: float, baseline_what: str, base_rate: float, base_cpu: float
) -> Row:
    """A rate per CPU-second of the server beside one in msg/s, no aim of its own: a server that
    is not busy (mosquitto, here) is held back by the load generator, not by its CPU, and its
    msg/s then says more about the co-tenants of the load's core than about the server."""
    return Row(
        f"{measure} ({cpu:.0%} busy)",
        rate / cpu if cpu else None,
        f"{baseline_what} ({base_cpu:.0%} busy)",
        base_rate / base_cpu if base_cpu else None,
    )


def mqtt_rows(r: Results) -> list[Row]:
    rate, cpu = r["msgs_per_s"], r["cpu"]
    load = f"MQTT QoS 1, {r['args']['publishers']} publishers x {r['args']['window']} in flight"
    rows = []
    for kind, label, aim in (
        ("gateway-delivered", "durable ACK (PUBACK after fsync)", 1.0),
        ("gateway-accepted", "`accepted`", 1.5),
    ):
        rows += [
            row(
                f"{load}, {label}: msg/s",
                rate[kind],
                "mosquitto (PUBACK from memory)",
                rate["mosquitto"],
                Aim("ratio", ">=", aim),
            ),
            per_core(
                "same, msg per CPU-second of the server",
                rate[kind],
                cpu[kind],
                "mosquitto",
                rate["mosquitto"],
                cpu["mosquitto"],
            ),
        ]
    vs_amqtt = f"{load}, `accepted` vs amqtt: msg/s"
    if "amqtt" in rate:
        rows.append(
            row(vs_amqtt, rate["gateway-accepted"], "amqtt", rate["amqtt"], Aim("ratio", ">=", 10))
        )
    else:
        rows.append(Row(vs_amqtt, aim=str(Aim("ratio", ">=", 10)), missing=AMQTT_MISSING))
    return rows


def bridge_rows(r: Results) -> list[Row]:
    med = r["medians"]
    mosquitto = med["mosquitto"]
    rows = []
    for protocol in ("3.1.1", "5"):
        gateway = med[f"gateway-{protocol}"]
        rows += [
            row(
                f"bridge A -> B, QoS 1, gateway bridge over MQTT {protocol}: forwarded msg/s",
                gateway["msgs"],
                "mosquitto's bridge",
                mosquitto["msgs"],
                Aim("ratio", ">=", 1.0),
            ),
            per_core(
                "same, msg per CPU-second of the bridge",
                gateway["msgs"],
                gateway["cpu"],
                "mosquitto's bridge",
                mosquitto["msgs"],
                mosquitto["cpu"],
            ),
        ]
    return rows


def decode_rows(r: Results) -> list[Row]:
    stage = "decode + parsed JSON"
    rows = []
    for codec, name, unit, aim in (
        ("evb1", "EVB1", "frames_per_s", 450_000),
        ("teltonika", "Teltonika", "records_per_s", 350_000),
        ("gt06", "GT06", "frames_per_s", 350_000),
    ):
        rows.append(
            row(
                f"{name} {stage}: {unit.replace('_per_s', '')} per CPU-second",
                r["codecs"][codec][stage][unit],
                "struct.unpack_from of an EVB1 body",
                r["baseline_per_s"],
                Aim("value", ">=", aim),
            )
        )
    return rows


def kinesis_rows(r: Results) -> list[Row]:
    rate = r["user_records_per_s"]
    return [
        row(
            "Kinesis shipping (aggregated, shard-aware): user records per CPU-second",
            rate["aggregated_lean"],
            "same through botocore's PutRecords",
            rate["aggregated_botocore"],
            Aim("value", ">=", 250_000),
        )
    ]


def replay_rows(r: Results) -> list[Row]:
    rate = r["records_per_s"]
    return [
        row(
            "replay from local gzip files: records per CPU-second, start-up subtracted",
            rate["replay"],
            "gunzip + JSON-decode floor",
            rate["floor"],
            Aim("value", ">=", 350_000),
        )
    ]


def judged_rows(r: Results) -> list[Row]:
    """The rows of bench/journal.py or bench/workers.py that carry an aim, as they judged them.
    Their measure reads "<what> vs <baseline> (<unit>)": the baseline is named without the unit."""
    rows = []
    for given in r["rows"]:
        if given["met"] is None:
            continue
        baseline_what = UNIT.sub("", given["measure"].partition(" vs ")[2])
        rows.append(
            Row(
                given["measure"],
                given["value"],
                baseline_what,
                given["baseline"],
                given["aim"],
                given["met"],
            )
        )
    return rows


# The issue's rows in its order, then issue 15's and the multi-core row: (bench, rows, what
# the rows are called while their bench has no results).
SECTIONS: tuple[tuple[str, Callable[[Results], list[Row]], tuple[str, ...]], ...] = (
    ("ingest", ingest_rows, ("TCP ingest, 1 frame per write", "TCP ingest, 8 frames per write")),
    ("mqtt", mqtt_rows, ("MQTT QoS 1, durable ACK", "MQTT QoS 1, `accepted`", "vs amqtt")),
    ("bridge", bridge_rows, ("bridge, MQTT 3.1.1", "bridge, MQTT 5")),
    ("decode", decode_rows, ("EVB1 decode", "Teltonika decode", "GT06 decode")),
    ("kinesis", kinesis_rows, ("Kinesis shipping",)),
    ("replay", replay_rows, ("replay",)),
    ("ingest", idle_rows, ("RSS per idle connection",)),
    (
        "journal",
        judged_rows,
        ("ACK p99, journaled vs fsync", "MQTT 1 client, stop-and-wait", "drain vs ingest"),
    ),
    ("workers", judged_rows, ("CPU per frame, --workers 2 vs --workers 1",)),
)


def build(results: dict[str, Results], why_missing: dict[str, str]) -> tuple[list[Row], set[str]]:
    """Every row, or each of a missing bench's rows with ``why_missing[bench]`` (or the figure
    its JSON lacks); and those reasons."""
    table: list[Row] = []
    reasons: set[str] = set()
    for bench, make, names in SECTIONS:
        try:
            table.extend(make(results[bench]))
            continue
        except KeyError as missing:
            reason = why_missing.get(bench, f"{bench}.json has no {missing}")
        reasons.add(reason)
        table.extend(Row(name, missing=reason) for name in names)
    return table, reasons


HEADER = ["measure", "value", "baseline", "ratio", "aim", "met"]


def markdown(table: list[Row]) -> str:
    lines = [HEADER, *([c.replace("|", "\\|") for c in r.cells()] for r in table)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    out = []
    for n, cells in enumerate(lines):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out) + "\n"


def machine() -> dict[str, str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "CPU": model,
        "cores": f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable)",
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "commit": commit or "unknown",
    }


def parser_build() -> str:
    """Which parser the benches import: mypyc's extension modules sit beside the sources
    (mypyc_build.py; ``make setup`` builds them, ``make pure`` removes them)."""
    compiled = list((ROOT / "parser").rglob(f"*{sysconfig.get_config_var('EXT_SUFFIX')}"))
    return f"compiled (mypyc, {len(compiled)} modules)" if compiled else "pure Python"


def load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def run_benches(directory: Path, amqtt_python: str | None) -> dict[str, Any]:
    """Each bench in turn; what each exited with, how long it took and the load around it."""
    runs: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": load_average(),
        "build_before": parser_build(),
        "benches": {},
    }
    for bench, args in BENCHES.items():
        extra = ["--amqtt-python", amqtt_python] if bench == "mqtt" and amqtt_python else []
        command = [sys.executable, str(BENCH / f"{bench}.py"), *args, *extra]
        failures: list[str] = []
        while True:
            load = load_average()
            print(f"\n== bench/{bench}.py {' '.join(args + extra)} (load {load})", flush=True)
            start = time.monotonic()
            done = subprocess.run(
                [*command, "--json", str(directory / f"{bench}.json")],
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
            sys.stderr.write(done.stderr)
            error = done.stderr.strip().rpartition("\n")[2]  # a traceback's last line
            runs["benches"][bench] = {
                "exit": done.returncode,
                "error": error,
                "failed_before": failures,
                "seconds": round(time.monotonic() - start, 1),
                "load_before": load,
            }
            if done.returncode == 0 or len(failures) + 1 == ATTEMPTS:
                break
            failures.append(error)
    runs["load_after"] = load_average()
    runs["build_after"] = parser_build()
    return runs


def collect(directory: Path, runs: dict[str, Any]) -> tuple[dict[str, Results], dict[str, str]]:
    results: dict[str, Results] = {}
    why_missing: dict[str, str] = {}
    for bench in BENCHES:
        run = runs.get("benches", {}).get(bench, {})
        path = directory / f"{bench}.json"
        if run.get("exit"):
            error = f" ({run['error']})" if run.get("error") else ""
            why_missing[bench] = f"bench/{bench}.py exited {run['exit']}{error}"
        elif path.exists():
            results[bench] = json.loads(path.read_text())
        else:
            why_missing[bench] = f"no {path.name} in {directory}"
    return results, why_missing


def report(table: list[Row], runs: dict[str, Any]) -> str:
    """The table as Markdown with the machine and the load it ran under."""
    lines = ["## Performance (issue 17)", ""]
    lines += [f"- {what}: {value}" for what, value in machine().items()]
    if "load_before" in runs:
        lines.append(f"- run started {runs['started']}")
        build = runs["build_before"]
        if runs["build_after"] != build:  # the checkout changed under the run
            build = f"{build} at the start, {runs['build_after']} at the end"
        lines.append(f"- parser build: {build}")
        lines.append(
            f"- load average (1, 5, 15 min): {runs['load_before']} before, "
            f"{runs['load_after']} after"
        )
        timings = ", ".join(
            f"{bench} {run['seconds']:.0f} s (load {run['load_before'].split()[0]})"
            for bench, run in runs["benches"].items()
        )
        lines.append(f"- benches (wall time, 1-min load at start): {timings}")
        lines += [
            f"- bench/{bench}.py failed first ({'; '.join(run['failed_before'])}), then ran again"
            for bench, run in runs["benches"].items()
            if run.get("failed_before")
        ]
    lines += ["", markdown(table)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table there")
    ap.add_argument("--amqtt-python", help="a Python that can import amqtt and uvloop")
    ap.add_argument("--dir", type=Path, help="keep each bench's JSON here (default: temporary)")
    ap.add_argument("--no-run", action="store_true", help="only build the table from --dir")
    args = ap.parse_args()
    if args.no_run and args.dir is None:
        sys.exit("--no-run needs --dir: the JSON of an earlier run")
    if args.amqtt_python and not Path(args.amqtt_python).exists():
        sys.exit(f"--amqtt-python: {args.amqtt_python} does not exist")
    with tempfile.TemporaryDirectory(prefix="bench-table-") as tmp:
        directory = args.dir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        run_file = directory / RUN_FILE
        if args.no_run:
            runs = json.loads(run_file.read_text()) if run_file.exists() else {}
        else:
            runs = run_benches(directory, args.amqtt_python)
            run_file.write_text(json.dumps(runs, indent=1))
        results, why_missing = collect(directory, runs)
    table, reasons = build(results, why_missing)
    text = report(table, runs)
    print("\n" + text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    if reasons:
        sys.exit(f"not measured: {'; '.join(sorted(reasons))}")


if __name__ == "__main__":
    main()
