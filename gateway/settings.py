"""The one settings object: a TOML file, ``GATEWAY_…`` environment overrides and CLI flags.

Precedence, highest first: command-line flags, environment (``GATEWAY_PIPELINE__HIGH_WATER_BYTES``;
lists as JSON), the TOML file, defaults. Loaded and validated once at start; everything else
receives the part it needs. ``config/local.toml`` is the commented example.

Each package owns its sections (``gateway/<package>/settings.py``); this module only assembles
them, so it sits above every package it names (an ops-level module: see
``tests/gateway/test_architecture.py``).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from gateway.bridge.settings import BridgeSettings
from gateway.common.settings_base import ConfigError
from gateway.journal.settings import JournalSettings
from gateway.notify.settings import NotificationSettings
from gateway.ops.settings import HealthSettings, LogSettings, MetricsSettings
from gateway.pipeline.settings import JsonCodecSettings, PipelineSettings
from gateway.sinks.settings import SinkSettings
from gateway.transport.mqtt.settings import MqttListenerSettings
from gateway.transport.settings import ListenerSettings

# What load_settings raises, for its callers.
__all__ = ["ConfigError"]


def _default_listeners() -> list[ListenerSettings]:
    return [
        ListenerSettings(codec="teltonika", port=5027),
        ListenerSettings(codec="gt06", port=5023),
        ListenerSettings(codec="ais140", port=5024),
        ListenerSettings(codec="evb1", port=5100),
    ]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    listeners: list[ListenerSettings] = Field(default_factory=_default_listeners)
    # MQTT device listeners (gateway/transport/mqtt/settings.py); none by default.
    mqtt_listeners: list[MqttListenerSettings] = []
    # Named JSON field mappings: each is a codec of that name that MQTT routes can use.
    json_codecs: dict[str, JsonCodecSettings] = {}
    # The Azure -> AWS MQTT bridge (gateway/bridge/settings.py); `gateway bridge` requires it.
    bridge: BridgeSettings | None = None
    pipeline: PipelineSettings = PipelineSettings()
    sink: SinkSettings = SinkSettings()
    # The journal's disk budget and retention (gateway/journal/settings.py); where it lives and
    # how its segments rotate is [sink.local].
    journal: JournalSettings = JournalSettings()
    metrics: MetricsSettings = MetricsSettings()
    health: HealthSettings = HealthSettings()
    log: LogSettings = LogSettings()
    # Fault notifications: rules, storm control, targets (gateway/notify/settings.py).
    notifications: NotificationSettings = NotificationSettings()
    # SIGTERM: stop accepting and reading, flush what was accepted and send the ACKs owed
    # within this deadline, then exit.
    shutdown_timeout_s: float = Field(default=20.0, gt=0)
    # Directories of codec layout files in addition to the project's codecs/.
    layout_dirs: list[Path] = []

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        seen: set[tuple[str, int]] = set()
        addresses = [(x.host, x.port) for x in self.listeners]
        addresses += [(x.host, x.port) for x in self.mqtt_listeners]
        for host, port in addresses:
            if port and (host, port) in seen:
                raise ValueError(f"two listeners on {host}:{port}")
            seen.add((host, port))
        return self


def load_settings(path: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from ``path`` (TOML), the environment and ``overrides``; raises ConfigError."""
    file_data: dict[str, Any] = {}
    if path is not None:
        try:
            file_data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, InitSettingsSource(settings_cls, file_data)

    try:
        return _Loaded(**(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None
    except SettingsError as exc:
        raise ConfigError([_environment_problem(exc)]) from None


def _environment_problem(exc: SettingsError) -> str:
    """One line for a ``GATEWAY_…`` value that should be JSON (a list or table) and is not.

    pydantic-settings names only the top-level field; the variables behind it are those named
    after it, and the JSON error (the cause) says where the value breaks.
    """
    field = re.search(r'field "([^"]+)"', str(exc))
    if field is None:
        return str(exc)
    prefix = f"GATEWAY_{field.group(1)}".upper()
    names = sorted(
        n for n in os.environ if n.upper() == prefix or n.upper().startswith(prefix + "__")
    )
    return f"{' or '.join(names) or prefix}: not valid JSON: {exc.__cause__ or exc}"


def _problems(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"{where}: {message}")
    return lines


def parse_listen(spec: str) -> ListenerSettings:
    """``CODEC=HOST:PORT`` from ``--listen``; raises ConfigError."""
    codec, sep, address = spec.partition("=")
    host, colon, port = address.rpartition(":")
    if not sep or not colon or not codec or not port.isdigit():
        raise ConfigError([f"--listen {spec!r}: expected CODEC=HOST:PORT"])
    try:
        return ListenerSettings(codec=codec, host=host.strip("[]") or "0.0.0.0", port=int(port))
    except ValidationError as exc:
        raise ConfigError([f"--listen {spec!r}: {p}" for p in _problems(exc)]) from None


def parse_address(spec: str, flag: str) -> tuple[str, int]:
    host, colon, port = spec.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ConfigError([f"{flag} {spec!r}: expected HOST:PORT"])
    return host.strip("[]") or "0.0.0.0", int(port)
