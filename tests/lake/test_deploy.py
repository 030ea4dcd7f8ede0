"""The nightly lake timer and its service (systemd/ev-gateway-lake.*): parsed and held to what
the job needs, with ``systemd-analyze verify`` and ``security`` where systemd is installed."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from gateway.cli.main import build_parser
from tests.systemd_units import (
    COMMON,
    INSTALLED_GATEWAY,
    SYSTEMD,
    environment,
    load_unit,
    needs_systemd_analyze,
    value,
)

SERVICE, TIMER = "ev-gateway-lake.service", "ev-gateway-lake.timer"
# What a oneshot job shares with the gateway's long-running units: the sandbox and the files.
ONESHOT_EXEMPT = {
    "Type",
    "NotifyAccess",
    "Restart",
    "RestartSec",
    "WatchdogSec",
    "KillMode",
    "ExecReload",
    "EnvironmentFile",
}


def exec_starts() -> list[list[str]]:
    """Each ExecStart= as its words, the unit's ${VAR} defaults put in."""
    unit = load_unit(SERVICE)
    env = environment(unit)
    lines = []
    for command in unit["Service"]["ExecStart"]:
        for name, default in env.items():
            command = command.replace("${" + name + "}", default)  # noqa: PLW2901
        lines.append(shlex.split(command))
    return lines


def test_the_timer_runs_the_service_nightly_after_midnight_utc_and_catches_up() -> None:
    timer = load_unit(TIMER)
    assert value(timer, "OnCalendar", "Timer") == "*-*-* 00:30:00 UTC"
    assert value(timer, "Persistent", "Timer") == "true"
    assert "Unit" not in timer["Timer"]  # the service of the same name
    assert value(timer, "WantedBy", "Install") == "timers.target"


def test_the_service_compacts_then_aggregates_yesterday_from_the_gateway_data_dir() -> None:
    service = load_unit(SERVICE)
    gateway = load_unit("ev-gateway.service")
    assert value(service, "Type") == "oneshot"
    compact, daily = exec_starts()
    assert compact[0] == daily[0] == INSTALLED_GATEWAY
    assert compact[-2:] == daily[-2:] == ["--date", "yesterday"]
    args = build_parser("lake").parse_args(compact[1:])
    assert args.lake_command == "compact"
    assert args.input == f"%S/{value(gateway, 'StateDirectory')}"
    daily_args = build_parser("lake").parse_args(daily[1:])
    assert daily_args.lake_command == "daily" and daily_args.lake == args.output
    # Reads the gateway's directory as the gateway's user, never writes it.
    assert value(service, "User") == value(gateway, "User")
    assert value(service, "StateDirectory").split() == [
        value(gateway, "StateDirectory"),
        args.output.removeprefix("%S/"),
    ]
    assert value(service, "ReadOnlyPaths") == args.input
    env_files = service["Service"]["EnvironmentFile"]
    assert env_files == ["-/etc/ev-gateway/gateway.env", "-/etc/ev-gateway/lake.env"]


def test_the_service_has_the_gateway_units_sandbox() -> None:
    service = load_unit(SERVICE)
    for key, expected in COMMON.items():
        if key not in ONESHOT_EXEMPT:
            assert value(service, key) == expected, key
    assert service["Service"]["CapabilityBoundingSet"] == [""]
    assert service["Service"]["SystemCallFilter"][0] == "@system-service"


def _installed_copies(tmp_path: Path) -> list[str]:
    gateway = str(Path(sys.executable).with_name("gateway"))
    copies = []
    for name in (SERVICE, TIMER):
        copy = tmp_path / name
        copy.write_text((SYSTEMD / name).read_text().replace(INSTALLED_GATEWAY, gateway))
        copies.append(str(copy))
    return copies


@needs_systemd_analyze
def test_systemd_analyze_verify_and_security_pass(tmp_path: Path) -> None:
    copies = _installed_copies(tmp_path)
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *copies],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", "--man=no", copies[0]],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr
