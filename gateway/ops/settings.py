"""Settings of the operational endpoints and logs: ``[metrics]``, ``[health]``, ``[log]``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.common.settings_base import Section


class MetricsSettings(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)


class HealthSettings(Section):
    """NLB health checks: ``/healthz`` (live) and ``/readyz`` (ready) over plain HTTP.

    Loopback unless configured, like the metrics: a deployment behind an NLB says where its
    health checks arrive (``systemd/ev-gateway.service`` and ``config/ec2.toml``: 0.0.0.0).
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # /readyz says no once a sink with records to write has written none for this long (every
    # call failing, every entry throttled, or waiting): the NLB sends new devices elsewhere.
    sink_down_after_s: float = Field(default=5.0, gt=0)


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: JSON lines when stdout is not a terminal (systemd, containers), console otherwise.
    format: Literal["auto", "json", "console"] = "auto"
