"""The systemd unit files as data: a parser of systemd's unit syntax, the sandbox every gateway
unit shares, and a skip for where ``systemd-analyze`` is missing (the deployment tests of the
gateway's units and of the lake's timer both hold their units to these)."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
INSTALLED_GATEWAY = "/opt/ev-gateway/.venv/bin/gateway"

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """systemd's unit syntax: ``[Section]``, ``Key=Value`` (a key may repeat: every value is kept,
    in order), ``#``/``;`` comments, a trailing backslash continues the line."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        if not sep or current is None:
            raise ValueError(f"line {number}: not a Key=Value inside a section: {raw!r}")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def load_unit(name: str) -> Unit:
    return parse_unit((SYSTEMD / name).read_text(encoding="utf-8"))


def value(unit: Unit, key: str, section: str = "Service") -> str:
    """The effective value of a single-valued setting: the last assignment wins."""
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= missing"
    return values[-1]


def environment(unit: Unit) -> dict[str, str]:
    env = {}
    for assignments in unit["Service"].get("Environment", []):
        for item in shlex.split(assignments):
            name, _, val = item.partition("=")
            env[name] = val
    return env


# Every unit: sd_notify, restarts, the environment file and the sandbox.
COMMON = {
    "Type": "notify",
    "NotifyAccess": "main",
    "Restart": "on-failure",
    "RestartSec": "2",
    "WatchdogSec": "30",
    "KillMode": "mixed",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "EnvironmentFile": "-/etc/ev-gateway/gateway.env",
    "DynamicUser": "yes",
    "UMask": "0077",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallErrorNumber": "EPERM",
}


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (Debian: apt-get install systemd); units only parsed",
)
