"""A real ``gateway run`` shipping to kinesalite: its settings file, a simulated fleet sending to
it, and what it shipped (user records through the stock deaggregator) or dead-lettered. The sink,
the raw-stream consumer and the MQTT dead-letter tests drive the gateway through it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.gateway.gatewayproc import GATEWAY, GatewayProcess
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.parser.kpl_stock import stock_deaggregate

CODECS = ("teltonika", "gt06", "evb1")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDLOCALTEST",
    "AWS_SECRET_ACCESS_KEY": "local-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_gateway(
    tmp: Path, endpoint: str, raw: str, parsed: str, extra: str = ""
) -> GatewayProcess:
    config = tmp / "kinesis.toml"
    listeners = "".join(
        f"[[listeners]]\ncodec = '{c}'\nhost = '127.0.0.1'\nport = 0\n" for c in CODECS
    )
    config.write_text(
        listeners
        + "[pipeline.raw]\nlinger_ms = 50\nmax_records = 5000\n"
        + "[pipeline.parsed]\nlinger_ms = 50\nmax_records = 5000\n"
        + f"[sink.kinesis]\nraw = {{ name = '{raw}' }}\nparsed = {{ name = '{parsed}' }}\n"
        + f"endpoint_url = '{endpoint}'\nretry_first_s = 0.05\nretry_max_s = 1.0\n{extra}"
    )
    return GatewayProcess(tmp / "data", codecs=(), config=config, env=AWS_ENV)


def simulate(
    gw: GatewayProcess, tmp: Path, devices: int, duration: float
) -> subprocess.Popen[bytes]:
    targets = [a for c in CODECS for a in ("--target", f"{c}=127.0.0.1:{gw.ports[c]}")]
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
            "2",
            "--duration",
            str(duration),
            "--seed",
            "11",
            "--ack-timeout",
            "10",
            "--acked-log",
            str(tmp / "acked.jsonl"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


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


def read_dead_letters(data_dir: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in (data_dir / "dead-letters").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
