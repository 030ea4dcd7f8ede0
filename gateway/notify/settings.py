"""``[notifications]``: the rules, storm control, the delivery targets and their retries.

Rules are TOML tables checked by :func:`parser.rules.parse_rules`, whose messages name the entry
and key (``notifications.rules: rules[2].op: one of >=, …``). The webhook secret is a
``SecretStr`` from the file, ``GATEWAY_NOTIFICATIONS__TARGETS__WEBHOOK__SECRET`` or
``secret_file``: shown as ``**********`` and never logged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from gateway.common.settings_base import Section
from parser.rules import NotificationEngine, Severity, parse_rules

# The customer's conditions (codecs/evb1.md, "Notifications"): cells at 60 °C for
# 10 s, clearing below 55 °C; SoC under 10 %, clearing at 15 %.
DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "code": "battery_overtemp",
        "metric": "cell_temp_max_c",
        "op": ">=",
        "threshold": 60,
        "hold_s": 10,
        "clear_threshold": 55,
        "severity": "critical",
    },
    {
        "code": "low_soc",
        "metric": "soc_pct",
        "op": "<",
        "threshold": 10,
        "clear_threshold": 15,
        "severity": "warning",
    },
]
# EVB1 units report a high-voltage isolation fault as FAULT 0x0102 from the BMS and a battery
# over-temperature as FAULT 0x0101 from thermal management (the reference unit's code table;
# gateway/fleet/model.py simulates both). 0x0101 joins the battery_overtemp rule's condition:
# the unit's report opens it at once, the cell temperatures clear it, one open per episode.
DEFAULT_ALARM_CODES = {"EVB1-0x0101": "battery_overtemp", "EVB1-0x0102": "isolation_fault"}
# Headers the gateway sets itself: a configured header must not replace them.
OWN_HEADERS = frozenset(
    {"content-type", "x-signature", "x-signature-timestamp", "x-notification-id"}
)
SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")


class RetrySettings(Section):
    """Per target: capped, jittered exponential backoff; given up after ``max_attempts`` or
    ``ttl_s`` from the frame's arrival (dead-lettered with the reason)."""

    first_s: float = Field(default=0.2, gt=0)
    max_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=10, ge=1)
    ttl_s: float = Field(default=600.0, gt=0)
    # Notifications waiting for one target; past this a new one is dead-lettered at once
    # ("queue_full"). The rate limit bounds what arrives: burst + rate_per_s * ttl_s.
    queue_max: int = Field(default=10_000, ge=1)
    # Deliveries at once per target, each for other devices (a device has one at a time, so its
    # notifications arrive in order): one failing or slow device holds back no other.
    max_in_flight: int = Field(default=16, ge=1, le=1024)


class SnsTargetSettings(Section):
    """An SNS topic; a ``.fifo`` topic gets MessageGroupId = device id (hashed when SNS would
    refuse it) and the notification id as MessageDeduplicationId. Credentials come from the
    standard AWS chain."""

    topic_arn: str
    region: str | None = None
    endpoint_url: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("topic_arn")
    @classmethod
    def _arn(cls, value: str) -> str:
        if not SNS_TOPIC_ARN.match(value):
            raise ValueError(f"not an SNS topic ARN: {value!r}")
        return value

    @property
    def fifo(self) -> bool:
        return self.topic_arn.endswith(".fifo")


class WebhookTargetSettings(Section):
    """The customer's notification service: a signed JSON POST per notification."""

    url: str = Field(pattern=r"^https?://[^\s/]+")
    secret: SecretStr | None = None
    secret_file: Path | None = None
    timeout_s: float = Field(default=5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    _key: bytes = PrivateAttr(default=b"")

    @field_validator("headers")
    @classmethod
    def _not_ours(cls, value: dict[str, str]) -> dict[str, str]:
        taken = sorted(name for name in value if name.lower() in OWN_HEADERS)
        if taken:
            raise ValueError(f"{taken[0]} is set by the gateway")
        return value

    @model_validator(mode="after")
    def _load_secret(self) -> WebhookTargetSettings:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("give secret (or its GATEWAY_… variable) or secret_file, one of them")
        if self.secret_file is not None:
            try:
                text = self.secret_file.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
                raise ValueError(f"secret_file {self.secret_file}: {reason}") from None
        else:
            assert self.secret is not None
            text = self.secret.get_secret_value()
        if len(text) < 16:
            # HMAC-SHA256 keys shorter than this are guessable; the length is no secret.
            raise ValueError("the webhook secret needs at least 16 characters")
        self._key = text.encode()
        return self

    @property
    def key(self) -> bytes:
        """The HMAC key (from ``secret`` or ``secret_file``)."""
        return self._key


class TargetSettings(Section):
    """Where notifications go besides ``notifications/``; the Kinesis stream is
    ``[sink.kinesis] notifications`` (the sink's client and settings)."""

    sns: SnsTargetSettings | None = None
    webhook: WebhookTargetSettings | None = None


class TeltonikaEventSettings(Section):
    """A Teltonika record whose event IO id is ``io_id`` raises ``code``."""

    io_id: int = Field(ge=1, le=65535)  # 0: a periodic record, no event
    code: str = Field(min_length=1)
    severity: Severity = "warning"


class NotificationSettings(Section):
    enabled: bool = True
    # [[notifications.rules]]: code, metric, op, threshold, severity, hold_s, clear_threshold.
    rules: list[dict[str, Any]] = Field(default_factory=lambda: [*DEFAULT_RULES])
    # Protocol alarms (EVB1 FAULT, GT06 alarm packets, Teltonika panic) at or above this notify.
    alarm_min_severity: Severity = "warning"
    # Protocol alarm code -> the code its notification carries.
    alarm_codes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ALARM_CODES))
    # An open condition is notified again this often while it lasts (none: never).
    reminder_s: float | None = Field(default=900.0, gt=0)
    # Storm control, over all devices: a token bucket; notifications past it are recorded in
    # notifications/ marked "suppressed" and counted, not sent to the targets.
    rate_per_s: float = Field(default=50.0, ge=0)
    burst: int = Field(default=500, ge=1)
    # Devices whose rule state is kept (least recently seen forgotten first).
    max_devices: int = Field(default=100_000, ge=1)
    teltonika_events: list[TeltonikaEventSettings] = Field(default_factory=list)
    targets: TargetSettings = TargetSettings()
    retry: RetrySettings = RetrySettings()

    @field_validator("rules")
    @classmethod
    def _valid_rules(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        parse_rules(value)  # ValueError names the entry and key
        return value

    @field_validator("teltonika_events")
    @classmethod
    def _distinct_events(cls, value: list[TeltonikaEventSettings]) -> list[TeltonikaEventSettings]:
        seen: set[int] = set()
        for event in value:
            if event.io_id in seen:
                raise ValueError(f"io_id {event.io_id} is configured twice")
            seen.add(event.io_id)
        return value

    def engine(self) -> NotificationEngine:
        """A fresh rule engine for these settings."""
        return NotificationEngine(
            parse_rules(self.rules),
            reminder_s=self.reminder_s,
            rate_per_s=self.rate_per_s,
            burst=self.burst,
            max_devices=self.max_devices,
            alarm_min_severity=self.alarm_min_severity,
            alarm_codes=self.alarm_codes,
            event_codes={e.io_id: (e.code, e.severity) for e in self.teltonika_events},
        )
