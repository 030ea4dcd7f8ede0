"""An EVB1 unit that raises faults and trips rules in a real ``gateway run``: its frames, the rules
the notification tests configure, and a device that sends a frame and waits for its ACK."""

from __future__ import annotations

import struct
from pathlib import Path

from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GatewayProcess
from tests.parser.streams import evb1_ack, evb1_frame, evb1_login

IMEI = "356307042441013"
TS = 1_767_225_600  # 2026-01-01T00:00:00Z
FAULT, TELEMETRY, HEARTBEAT = 3, 2, 4
THERMAL = 4
ACK_BYTES = 11

RULES = """
[notifications]
reminder_s = 3600
[[notifications.rules]]
code = "battery_overtemp"
metric = "cell_temp_max_c"
op = ">="
threshold = {overtemp}
clear_threshold = 55
severity = "critical"
[[notifications.rules]]
code = "low_soc"
metric = "soc_pct"
op = "<"
threshold = {low_soc}
severity = "warning"
"""


def fault(seq: int, code: int = 0x0101, severity: int = 2, value: int = 66) -> bytes:
    """EVB1 FAULT (codecs/evb1.md): ts, code, severity, subsystem, value."""
    return evb1_frame(FAULT, seq, struct.pack(">IHBBi", TS + seq, code, severity, THERMAL, value))


def telemetry(seq: int, *, cell_t_max: int = 30, soc_pct: float = 80.0) -> bytes:
    """EVB1 TELEMETRY with the two values the rules watch; the rest plausible."""
    body = struct.pack(
        ">IiiHHHBHhHHbbhbIH",
        TS + seq,
        129_716_000,  # lat 12.9716
        775_946_000,  # lon 77.5946
        423,  # 42.3 km/h
        90,
        round(soc_pct * 10),
        97,
        3_512,  # 351.2 V
        -421,  # -42.1 A
        3_650,
        3_690,
        25,
        cell_t_max,
        3_900,
        61,
        123_456,
        0b1001,  # ignition, gps_valid
    )
    return evb1_frame(TELEMETRY, seq, body)


class Device:
    """One logged-in EVB1 unit that sends a frame and reads its ACK."""

    def __init__(self, port: int, imei: str = IMEI) -> None:
        self.sock = DeviceSocket(port)
        self.sock.send(evb1_login(imei))
        assert self.sock.recv_exact(ACK_BYTES) == evb1_ack(0, 1)

    def send(self, frame: bytes, seq: int, type_id: int) -> None:
        self.sock.send(frame)
        assert self.sock.recv_exact(ACK_BYTES) == evb1_ack(seq, type_id)


def start(tmp_path: Path, toml: str) -> GatewayProcess:
    config = tmp_path / "gateway.toml"
    config.write_text(toml)
    return GatewayProcess(tmp_path / "data", codecs=("evb1",), config=config)
