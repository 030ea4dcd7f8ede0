"""Settings of the TCP device listeners (``[[listeners]]``) and of TLS on device ports.

The MQTT listeners' sections are in ``gateway.transport.mqtt.settings``; both take TlsSettings.
"""

from __future__ import annotations

import zoneinfo
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from gateway.common.settings_base import AckPolicy, Section
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


class TlsSettings(Section):
    """TLS on a device listener; certificates are read again on SIGHUP (no connection drops)."""

    cert_file: Path
    key_file: Path
    # Mutual TLS: devices must present a certificate signed by this CA.
    client_ca_file: Path | None = None
    min_version: Literal["1.2", "1.3"] = "1.2"


class EdgeSettings(Section):
    """What every device port (TCP and MQTT listeners) says about who may reach it and how."""

    # TLS on the port. With client_ca_file (mutual TLS) the certificate's CN is the identity: a
    # TCP login must name that device; MQTT uses it with identity = "certificate".
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
    def _proxy_trust(self) -> Self:
        trusted_proxies(self.proxy_protocol, self.proxy_protocol_trusted_networks)
        return self


class ListenerSettings(EdgeSettings):
    """One TCP port for one codec."""

    codec: str
    host: str = "0.0.0.0"
    port: int = Field(ge=0, le=65535)  # 0 = any free port (tests, demos)
    # accepted: ACK once in the gateway's memory; journaled: once a journal fsync covers the
    # frame; delivered: once every remote target (Kinesis) confirmed its records.
    ack_policy: AckPolicy = "journaled"
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
