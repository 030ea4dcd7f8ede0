"""``make demo``: the gateway on its local default with a simulated 1,000-device mixed fleet.

Starts ``gateway run --config config/local.toml`` (Teltonika 5027, GT06 5023, EVB1 5100, local
sink, metrics on 127.0.0.1:9108), drives it for 30 s with ``gateway simulate``, stops it with
SIGTERM, and prints the simulator's summary, what landed on disk and where.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = str(Path(sys.executable).with_name("gateway"))
STREAMS = ("raw", "parsed", "errors", "notifications")


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=1.0, help="frames per device per second")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "demo")
    ap.add_argument(
        "--kinesis",
        action="store_true",
        help="send records to ev-raw/ev-parsed on a local kinesalite, then tail them",
    )
    args = ap.parse_args()

    shutil.rmtree(args.data_dir, ignore_errors=True)  # the demo's own directory: fresh counts
    env = {**os.environ, "GATEWAY_LOG__FORMAT": "json"}
    config = ROOT / "config" / "local.toml"
    emulator = None
    if args.kinesis:
        config = ROOT / "config" / "kinesis-local.toml"
        emulator, endpoint = start_kinesalite()
        env.update(KINESIS_ENV, AWS_ENDPOINT_URL_KINESIS=endpoint)
        print(f"kinesalite on {endpoint}: streams ev-raw and ev-parsed, 4 shards each")
    try:
        return run_demo(args, config, env)
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


def run_demo(args: argparse.Namespace, config: Path, env: dict[str, str]) -> int:
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
        print("demo: the gateway did not start (are ports 5027/5023/5100/9108 free?)")
        return 1
    # Keep draining the gateway's log so it never blocks on a full pipe.
    threading.Thread(target=gateway.stdout.read, daemon=True).start()
    ports = {item["codec"]: item["port"] for item in ready["listeners"]}
    metrics_url = ready["metrics"]
    print(
        f"gateway ready: {', '.join(f'{c} on :{p}' for c, p in ports.items())}; "
        f"metrics at {metrics_url}"
    )
    print(f"simulating {args.devices} devices ({', '.join(ports)}) for {args.duration:.0f} s …")

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
    )
    started = time.monotonic()
    while simulator.poll() is None:
        time.sleep(5)
        if simulator.poll() is not None:
            break
        try:
            m = scrape(metrics_url)
        except OSError:
            continue
        elapsed = time.monotonic() - started
        conns, frames = m.get("gateway_connections_open", 0), m.get("gateway_frames_total", 0)
        acks, buffered = m.get("gateway_acks_total", 0), m.get("gateway_buffered_bytes", 0)
        print(
            f"  t={elapsed:4.0f}s  connections {conns:5.0f}  frames {frames:8.0f}"
            f"  acks {acks:8.0f}  buffered {buffered / 1024:7.1f} KiB"
        )
    summary_text = (simulator.stdout.read() if simulator.stdout else b"").decode().strip()
    gateway.send_signal(signal.SIGTERM)
    code = gateway.wait(60)

    print("\nsimulator summary:")
    print(summary_text.splitlines()[-1] if summary_text else "(none)")
    print(f"\ngateway stopped with exit status {code}; records on disk under {args.data_dir}:")
    for stream in STREAMS:
        if args.kinesis and stream in ("raw", "parsed"):
            print(f"  {stream:<14} sent to Kinesis (ev-{stream}); tailed below")
            continue
        files, lines = count_lines(args.data_dir / stream)
        print(f"  {stream:<14} {lines:>8} records in {files} file(s)   {args.data_dir / stream}/")
    if args.kinesis:
        for stream in ("ev-raw", "ev-parsed"):
            tail = subprocess.run(
                [
                    GATEWAY,
                    "kinesis",
                    "tail",
                    "--stream",
                    stream,
                    "--from-start",
                    "--idle-exit",
                    "2",
                ],
                capture_output=True,
                env=env,
                timeout=120,
                check=False,
            )
            tailed = tail.stdout.decode().splitlines()
            print(f"\n`gateway kinesis tail --stream {stream} --from-start`: {len(tailed)} records")
            for line in tailed[:2]:
                print(f"  {line[:160]}…")
    print(f"\nmetrics were live at {metrics_url} while the gateway ran")
    return 0 if code == 0 and simulator.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
