"""``make demo``: the gateway on its local default with a simulated 1,000-device mixed fleet.

Starts ``gateway run --config config/local.toml`` (Teltonika 5027, GT06 5023, AIS-140 5024, EVB1
5100, local sink, metrics on 127.0.0.1:9108), drives it for 30 s with ``gateway simulate``, stops
it with SIGTERM, and reports the simulator's summary, what landed on disk and where: a short table
on a terminal, one JSON object per line when the output is piped.

The configured ports are checked before anything else: a busy one (another gateway, an earlier
demo still running) ends the demo with one line, before ``data/demo`` is cleared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from gateway.cli.status import EXIT_USAGE
from gateway.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = str(Path(sys.executable).with_name("gateway"))
STREAMS = ("raw", "parsed", "errors", "notifications")
PROGRESS_S = 5.0
# What a reader of the summary needs so that "acked < sent" does not read as data loss.
NO_ACK_NOTE = (
    "no reply: GT06 location packets and every AIS-140 packet, which the protocols never"
    " acknowledge; stored too"
)


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=2) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            name = key.partition("{")[0]
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def count_lines(directory: Path) -> tuple[int, int]:
    files = sorted(directory.glob("*.jsonl"))
    return len(files), sum(sum(1 for _ in f.open("rb")) for f in files)


def busy_ports(settings: Settings, extra: list[tuple[str, int]]) -> list[str]:
    """The fixed ports the demo will bind that something already listens on, one line each."""
    wanted = [(f"{ls.codec} listener", ls.host, ls.port) for ls in settings.listeners]
    wanted += [("mqtt listener", ms.host, ms.port) for ms in settings.mqtt_listeners]
    if settings.metrics.enabled:
        wanted.append(("metrics", settings.metrics.host, settings.metrics.port))
    if settings.health.enabled:
        wanted.append(("health", settings.health.host, settings.health.port))
    wanted += [(what, "127.0.0.1", port) for what, port in extra]
    busy = []
    for what, host, port in wanted:
        if port == 0:
            continue
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        try:
            # SO_REUSEADDR, as asyncio's servers bind: a socket in TIME_WAIT is no conflict.
            socket.create_server((host, port), family=family).close()
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            busy.append(f"{what} {host}:{port}: {reason}")
    return busy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=1.0, help="frames per device per second")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "demo")
    ap.add_argument("--config", type=Path, help="gateway settings (default config/local.toml)")
    ap.add_argument(
        "--kinesis",
        action="store_true",
        help="send records to ev-raw/ev-parsed on a local kinesalite, then tail them",
    )
    args = ap.parse_args()

    env = {**os.environ, "GATEWAY_LOG__FORMAT": "json"}
    config = args.config or ROOT / "config" / "local.toml"
    if args.kinesis and args.config is None:
        config = ROOT / "config" / "kinesis-local.toml"
    try:
        settings = load_settings(config, {"sink": {"local": {"data_dir": args.data_dir}}})
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"demo: {problem}", file=sys.stderr)
        return EXIT_USAGE
    busy = busy_ports(settings, [("kinesalite", KINESALITE_PORT)] if args.kinesis else [])
    if busy:
        for line in busy:
            print(f"demo: {line} (another gateway or demo still running?)", file=sys.stderr)
        return EXIT_USAGE
    shutil.rmtree(args.data_dir, ignore_errors=True)  # the demo's own directory: fresh counts
    human = sys.stdout.isatty()
    emulator = None
    if args.kinesis:
        emulator, endpoint = start_kinesalite()
        env.update(KINESIS_ENV, AWS_ENDPOINT_URL_KINESIS=endpoint)
        if human:
            print(f"kinesalite on {endpoint}: streams ev-raw and ev-parsed, 4 shards each")
    try:
        return run_demo(args, config, env, human)
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(10)


KINESIS_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "AKIDLOCALDEMO",
    "AWS_SECRET_ACCESS_KEY": "local-demo-secret",
}
KINESALITE_PORT = 4567


def start_kinesalite() -> tuple[subprocess.Popen[bytes], str]:
    """kinesalite from the project's node_modules (make setup), with the two demo streams."""
    cli = ROOT / "node_modules" / "kinesalite" / "cli.js"
    port = KINESALITE_PORT
    proc = subprocess.Popen(
        ["node", str(cli), "--port", str(port), "--createStreamMs", "0", "--shardLimit", "100"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            for name in ("ev-raw", "ev-parsed"):
                _kinesis_call(endpoint, "CreateStream", {"StreamName": name, "ShardCount": 4})
            return proc, endpoint
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit(f"demo: kinesalite did not start on port {port}") from None
            time.sleep(0.1)


def _kinesis_call(endpoint: str, operation: str, payload: dict[str, Any]) -> None:
    # kinesalite checks that signature headers are present, not what they say.
    request = urllib.request.Request(
        endpoint,
        data=json.dumps(payload).encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"Kinesis_20131202.{operation}",
            "X-Amz-Date": "20260101T000000Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDLOCALDEMO/20260101/us-east-1/"
            "kinesis/aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def progress(elapsed_s: float, m: dict[str, float], human: bool) -> str:
    """One progress line from the gateway's metrics: connections, frames, replies, buffer."""
    values = {
        "t_s": round(elapsed_s),
        "connections": int(m.get("gateway_connections_open", 0)),
        "frames": int(m.get("gateway_frames_total", 0)),
        "replies": int(m.get("gateway_acks_total", 0)),
        "buffered_bytes": int(m.get("gateway_buffered_bytes", 0)),
    }
    if not human:
        return json.dumps({"progress": values})
    return (
        f"  t={values['t_s']:4d}s  connections {values['connections']:5d}"
        f"  frames {values['frames']:8d}  replies {values['replies']:8d}"
        f"  buffered {values['buffered_bytes'] / 1024:7.1f} KiB"
    )


def table(report: dict[str, Any]) -> str:
    """The report for a person: the fleet per codec, then the records on disk."""
    sim = report["simulator"]
    rows = [("codec", "sent", "acked", "no reply", "unacked", "resent", "ack p50", "ack p99")]
    codecs = dict(sim.get("by_codec", {}))
    codecs["all"] = sim
    for codec, s in codecs.items():
        rows.append(
            (
                codec,
                *(str(s[key]) for key in ("sent", "acked", "no_ack", "unacked", "resent")),
                *("-" if s[k] is None else f"{s[k]:.1f} ms" for k in ("ack_p50_ms", "ack_p99_ms")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        f"fleet: {sim['devices']} devices for {sim['run_s']:.0f} s"
        f" ({sim['connect_errors']} connect errors)"
    ]
    for row in rows:
        cells = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)),
        ]
        lines.append("  " + "  ".join(cells))
    lines.append(f"  {NO_ACK_NOTE}")
    lines.append("  unacked: frames still waiting for their reply when the fleet stopped")
    lines.append(f"\ngateway stopped with exit status {report['gateway_exit_status']}; records:")
    for stream, where in report["records"].items():
        if "sent_to" in where:
            lines.append(f"  {stream:<14} sent to Kinesis ({where['sent_to']})")
        else:
            lines.append(
                f"  {stream:<14} {where['records']:>8} in {where['files']} file(s)"
                f"   {where['dir']}/"
            )
    for stream, tail in report.get("kinesis", {}).items():
        lines.append(
            f"\n`gateway kinesis tail --stream {stream} --from-start`: {tail['records']} records"
        )
        lines += [f"  {line[:160]}…" for line in tail["first"]]
    lines.append(f"\nmetrics were live at {report['metrics']} while the gateway ran")
    return "\n".join(lines)


def run_demo(args: argparse.Namespace, config: Path, env: dict[str, str], human: bool) -> int:
    gateway = subprocess.Popen(
        [GATEWAY, "run", "--config", str(config), "--data-dir", str(args.data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    ready: dict[str, Any] = {}
    log_tail: list[str] = []
    assert gateway.stdout is not None
    for raw in gateway.stdout:
        text = raw.decode(errors="replace")
        log_tail.append(text)
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if line.get("event") == "ready":
            ready = line
            break
    if not ready:
        gateway.wait(10)
        sys.stderr.write("".join(log_tail[-10:]))
        print("demo: the gateway did not start", file=sys.stderr)
        return 1
    # Keep draining the gateway's log so it never blocks on a full pipe.
    threading.Thread(target=gateway.stdout.read, daemon=True).start()
    ports = {item["codec"]: item["port"] for item in ready["listeners"]}
    metrics_url = ready["metrics"]
    if human:
        print(
            f"gateway ready: {', '.join(f'{c} on :{p}' for c, p in ports.items())}; "
            f"metrics at {metrics_url}"
        )
        print(f"simulating {args.devices} devices ({', '.join(ports)}) for {args.duration:.0f} s …")
        print(
            "  (GT06 location and AIS-140 packets get no reply by protocol: replies < frames is"
            " expected)"
        )

    targets = [
        arg for codec, port in ports.items() for arg in ("--target", f"{codec}=127.0.0.1:{port}")
    ]
    simulator = subprocess.Popen(
        [
            GATEWAY,
            "simulate",
            "--codec",
            ",".join(ports),
            *targets,
            "--devices",
            str(args.devices),
            "--rate",
            str(args.rate),
            "--duration",
            str(args.duration),
            "--faults",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        # Not the terminal: its own progress line would mix with ours. Only errors come here.
        stderr=subprocess.PIPE,
    )
    started = time.monotonic()
    while True:
        try:
            simulator.wait(PROGRESS_S)
            break
        except subprocess.TimeoutExpired:
            pass
        try:
            m = scrape(metrics_url)
        except OSError:
            continue
        print(progress(time.monotonic() - started, m, human), flush=True)
    summary_text = (simulator.stdout.read() if simulator.stdout else b"").decode().strip()
    sys.stderr.write((simulator.stderr.read() if simulator.stderr else b"").decode())
    gateway.send_signal(signal.SIGTERM)
    code = gateway.wait(60)

    report: dict[str, Any] = {
        "simulator": json.loads(summary_text.splitlines()[-1]) if summary_text else None,
        "simulator_exit_status": simulator.returncode,
        "gateway_exit_status": code,
        "records": {},
        "metrics": metrics_url,
    }
    for stream in STREAMS:
        if args.kinesis and stream in ("raw", "parsed"):
            report["records"][stream] = {"sent_to": f"ev-{stream}"}
            continue
        files, lines = count_lines(args.data_dir / stream)
        report["records"][stream] = {
            "records": lines,
            "files": files,
            "dir": str(args.data_dir / stream),
        }
    if args.kinesis:
        report["kinesis"] = {stream: tail_stream(stream, env) for stream in ("ev-raw", "ev-parsed")}
    if not human:
        print(json.dumps(report))
    elif report["simulator"] is None:
        print(f"\nthe simulator printed no summary (exit status {simulator.returncode})")
    else:
        print("\n" + table(report))
    return 0 if code == 0 and simulator.returncode == 0 else 1


def tail_stream(stream: str, env: dict[str, str]) -> dict[str, Any]:
    """``gateway kinesis tail`` of a whole stream: how many records, and the first two."""
    tail = subprocess.run(
        [GATEWAY, "kinesis", "tail", "--stream", stream, "--from-start", "--idle-exit", "2"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    tailed = tail.stdout.decode().splitlines()
    return {"records": len(tailed), "first": tailed[:2]}


if __name__ == "__main__":
    sys.exit(main())
