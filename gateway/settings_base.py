"""The pieces every settings section shares: the frozen section base, ACK policies, TLS, errors.

Areas with many settings (MQTT, bridge, notifications) keep their sections in their own module
built on ``Section``; ``gateway.settings`` assembles the one ``Settings`` object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

AckPolicy = Literal["accepted", "delivered"]


class ConfigError(Exception):
    """Invalid configuration; ``problems`` holds one ``field.path: message`` line per error."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TlsSettings(Section):
    """TLS on a device listener; certificates are read again on SIGHUP (no connection drops)."""

    cert_file: Path
    key_file: Path
    # Mutual TLS: devices must present a certificate signed by this CA.
    client_ca_file: Path | None = None
    min_version: Literal["1.2", "1.3"] = "1.2"
