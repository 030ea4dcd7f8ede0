"""``make demo`` as a newcomer meets it: ports checked first, a report that reads right."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.cli.demo import NO_ACK_NOTE, table

CODECS = ("teltonika", "gt06", "ais140", "evb1")


def config(tmp_path: Path, ports: dict[str, int]) -> Path:
    """The demo's settings on loopback; a codec without a port in ``ports`` gets port 0."""
    path = tmp_path / "demo.toml"
    listeners = "".join(
        f"[[listeners]]\ncodec = '{codec}'\nhost = '127.0.0.1'\nport = {ports.get(codec, 0)}\n"
        for codec in CODECS
    )
    path.write_text(listeners + "[health]\nport = 0\n[metrics]\nport = 0\n")
    return path


def demo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_busy_port_stops_the_demo_before_it_clears_its_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "raw").mkdir(parents=True)
    kept = data / "raw" / "earlier.jsonl"
    kept.write_text("{}\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = demo("--config", str(config(tmp_path, {"gt06": port})), "--data-dir", str(data))
    assert result.returncode == 2
    assert result.stderr == (
        f"demo: gt06 listener 127.0.0.1:{port}: Address already in use "
        "(another gateway or demo still running?)\n"
    )
    assert result.stdout == ""
    assert kept.read_text() == "{}\n", "the earlier run's data is still there"


def test_piped_the_demo_prints_json_and_every_frame_is_acked_or_owes_no_reply(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    result = demo(
        "--config", str(config(tmp_path, {})), "--data-dir", str(data),
        "--devices", "12", "--duration", "3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    report = lines[-1]
    assert all("progress" in line for line in lines[:-1])
    sim = report["simulator"]
    assert sim["sent"] > 0 and sim["unacked"] == 0
    assert sim["sent"] == sim["acked"] + sim["no_ack"]
    by_codec = sim["by_codec"]
    assert by_codec["gt06"]["no_ack"] > 0  # location packets: the protocol has no reply
    assert by_codec["teltonika"]["no_ack"] == by_codec["evb1"]["no_ack"] == 0
    assert by_codec["ais140"]["no_ack"] == by_codec["ais140"]["sent"] > 0  # no reply at all
    assert report["gateway_exit_status"] == 0
    raw = report["records"]["raw"]
    assert raw["dir"] == str(data / "raw") and raw["records"] >= sim["sent"]


def test_the_terminal_table_says_what_no_reply_means() -> None:
    def codec(sent: int, acked: int, no_ack: int) -> dict[str, Any]:
        return {"sent": sent, "acked": acked, "no_ack": no_ack, "unacked": 0, "resent": 1,
                "ack_p50_ms": 1.5, "ack_p99_ms": None}  # fmt: skip

    by_codec = {"gt06": codec(100, 30, 70), "evb1": codec(50, 50, 0)}
    report = {
        "simulator": {**codec(150, 80, 70), "devices": 4, "run_s": 30.0, "connect_errors": 0,
                      "by_codec": by_codec},
        "gateway_exit_status": 0,
        "records": {"raw": {"records": 154, "files": 1, "dir": "data/demo/raw"}},
        "metrics": "http://127.0.0.1:9108/metrics",
    }  # fmt: skip
    text = table(report)
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("  ")}
    assert rows["codec"][:5] == ["codec", "sent", "acked", "no", "reply"]
    assert rows["gt06"][:4] == ["gt06", "100", "30", "70"]
    assert rows["all"][:4] == ["all", "150", "80", "70"]
    assert rows["evb1"][-3:] == ["1.5", "ms", "-"]
    assert NO_ACK_NOTE in text and "GT06 location packets" in NO_ACK_NOTE
    assert "data/demo/raw/" in text
