"""The one settings object: a TOML file, ``GATEWAY_…`` environment overrides and CLI flags.

Precedence, highest first: command-line flags, environment (``GATEWAY_PIPELINE__HIGH_WATER_BYTES``;
lists as JSON), the TOML file, defaults. Loaded and validated once at start; everything else
receives the part it needs. ``config/local.toml`` is the commented example.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from gateway.bridge.settings import BridgeSettings
from gateway.common.settings_base import AckPolicy, ConfigError, Section, TlsSettings
from gateway.notify.settings import NotificationSettings
from gateway.transport.mqtt.settings import JsonCodecSettings, MqttListenerSettings
from parser.ais140 import Ais140Variant
from parser.gt06_packets import VARIANTS as GT06_VARIANTS
from parser.proxy_protocol import AllowList, trusted_proxies
from parser.teltonika import VARIANTS as TELTONIKA_VARIANTS

# Model variants each codec accepts (a codec not listed has only "standard").
CODEC_VARIANTS = {
    "gt06": frozenset(GT06_VARIANTS),
    "ais140": frozenset(v.value for v in Ais140Variant),
    "teltonika": frozenset(TELTONIKA_VARIANTS),
}

__all__ = ["AckPolicy", "ConfigError", "Section", "TlsSettings"]


class ListenerSettings(Section):
    """One TCP port for one codec."""

    codec: str
    host: str = "0.0.0.0"
    port: int = Field(ge=0, le=65535)  # 0 = any free port (tests, demos)
    # accepted: ACK once in the gateway's buffer; delivered: once the sink durably wrote it.
    ack_policy: AckPolicy = "delivered"
    max_connections: int = Field(default=15_000, ge=1)
    # A connection with no complete frame for this long is closed: catches half-open sockets
    # and slowloris trickles (bytes that never finish a frame do not count as activity).
    idle_timeout_s: float = Field(default=600.0, gt=0)
    login_timeout_s: float = Field(default=30.0, gt=0)
    require_login: bool = True
    max_frame_bytes: int | None = Field(default=None, ge=16)
    # A device that does not read its ACKs is cut off once this much is queued for it.
    write_buffer_bytes: int = Field(default=64 * 1024, ge=1024)
    timezone: str = "UTC"
    # The device model family, for codecs whose models differ from the protocol document
    # (gt06: standard | voltage_heartbeat | imei_location | trx16i | sr411_mini; teltonika:
    # standard | io16; ais140: standard | sum16); like the time zone, per listener.
    variant: str = "standard"
    allowed_devices: list[str] | None = None
    # With client_ca_file (mutual TLS), a login must name the device in the certificate's CN.
    tls: TlsSettings | None = None
    # With NLB IP targets the device address arrives in a PROXY protocol v2 header; "optional"
    # also takes connections without one (health checks, direct tests).
    proxy_protocol: Literal["off", "optional", "required"] = "off"
    # Peers whose PROXY headers are believed (CIDRs: the NLB's subnets); required when
    # proxy_protocol is on. Any other peer sending a header is refused, and under "required"
    # any other peer at all. Reloaded on SIGHUP.
    proxy_protocol_trusted_networks: list[str] | None = None
    # Source networks allowed to connect (CIDRs; after PROXY, the device's own address).
    # Unset: any source. Reloaded on SIGHUP.
    allowed_networks: list[str] | None = None

    @field_validator("allowed_networks")
    @classmethod
    def _valid_networks(cls, value: list[str] | None) -> list[str] | None:
        AllowList.parse(value)  # ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _proxy_trust(self) -> ListenerSettings:
        trusted_proxies(self.proxy_protocol, self.proxy_protocol_trusted_networks)
        return self

    @model_validator(mode="after")
    def _known_variant(self) -> ListenerSettings:
        known = CODEC_VARIANTS.get(self.codec, frozenset({"standard"}))
        if self.variant not in known:
            names = ", ".join(sorted(known))
            raise ValueError(f"unknown variant {self.variant!r} for codec {self.codec}: {names}")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value != "UTC":
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value


class AccumulatorSettings(Section):
    """A batch is written when it is full (records or bytes) or its first record lingered.

    ``linger_ms`` applies to remote sinks (Kinesis); the local journal group-commits instead
    (a write starts as soon as the previous one finished), so ACKs never wait for a linger."""

    linger_ms: int = Field(default=50, ge=0, le=60_000)
    max_records: int = Field(default=500, ge=1, le=100_000)
    max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)


class PipelineSettings(Section):
    # One memory budget for everything accepted but not yet written: above the high watermark
    # every reader pauses, below the low watermark they resume.
    high_water_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    low_water_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    raw: AccumulatorSettings = AccumulatorSettings()
    parsed: AccumulatorSettings = AccumulatorSettings()

    @model_validator(mode="after")
    def _watermarks(self) -> PipelineSettings:
        if self.low_water_bytes >= self.high_water_bytes:
            raise ValueError("low_water_bytes must be below high_water_bytes")
        return self


class LocalSinkSettings(Section):
    """Rotating JSON-lines files under ``data_dir``: raw/, parsed/, errors/, notifications/."""

    data_dir: Path = Path("data")
    rotate_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    rotate_age_s: float = Field(default=300.0, gt=0)
    # batch: fsync every batch before its frames count as written (what `delivered` promises
    # across power loss); never: leave it to the OS (survives a crash of the process only).
    fsync: Literal["batch", "never"] = "batch"
    # Test and chaos hook: while this file exists the sink stalls before each write, as a slow
    # or hung disk would (the backpressure test uses it; never set in production).
    stall_while_exists: Path | None = None


class KinesisStreamSettings(Section):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_.-]+$")
    # KPL-format aggregation: many user records per Kinesis record, routed to the shard their
    # partition keys hash to (stock deaggregators and Firehose read them).
    aggregate: bool = True


class KinesisSettings(Section):
    """The production sink: raw and parsed records to two Kinesis Data Streams.

    Credentials come from the standard AWS chain (environment, profile, EC2 instance metadata
    with IMDSv2); the endpoint from ``endpoint_url`` or botocore's ``AWS_ENDPOINT_URL_KINESIS``.
    """

    raw: KinesisStreamSettings
    parsed: KinesisStreamSettings
    notifications: KinesisStreamSettings | None = None
    region: str | None = None
    endpoint_url: str | None = None
    # Aggregates close at this size: 50,000 bytes bill exactly 2 PUT payload units (25,000 B
    # each), where the KPL's 51,200 bills 3 (bench/kinesis_agg.py).
    aggregate_max_bytes: int = Field(default=50_000, ge=1024, le=1_000_000)
    # A record not delivered within this long is dead-lettered and its frame is not ACKed,
    # so the device keeps it and sends it again (the KPL's RecordTtl, longer by default).
    record_ttl_s: float = Field(default=60.0, gt=0)
    retry_first_s: float = Field(default=0.1, gt=0)
    retry_max_s: float = Field(default=5.0, gt=0)
    # Per-shard send rate as a percentage of the shard limits (1,000 records/s and 1 MiB/s),
    # like the KPL's RateLimit; lowered on throttling, back within 10 s once throttling stops.
    rate_limit_pct: int = Field(default=150, ge=10, le=1000)
    shard_map_refresh_s: float = Field(default=60.0, gt=0)
    request_timeout_s: float = Field(default=10.0, gt=0)


class SinkSettings(Section):
    local: LocalSinkSettings = LocalSinkSettings()
    # When set, raw and parsed records (and notifications, if configured) go to Kinesis;
    # decode errors and dead letters stay in local files.
    kinesis: KinesisSettings | None = None


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
