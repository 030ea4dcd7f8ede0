"""``[notifications]``: defaults, rule errors as ConfigError lines, the webhook secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main as cli
from gateway.settings import ConfigError, load_settings

SECRET = "s3cret-s3cret-s3cret"


def problems(tmp_path: Path, toml: str) -> list[str]:
    path = tmp_path / "gateway.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    return raised.value.problems


def test_defaults_are_the_customers_rules_with_no_targets() -> None:
    settings = load_settings(None).notifications
    assert settings.enabled
    engine = settings.engine()
    assert [(r.code, r.metric, r.op, r.threshold, r.hold_s, r.severity) for r in engine.rules] == [
        ("battery_overtemp", "cell_temp_max_c", ">=", 60.0, 10.0, "critical"),
        ("low_soc", "soc_pct", "<", 10.0, 0.0, "warning"),
    ]
    assert settings.alarm_codes == {
        "EVB1-0x0101": "battery_overtemp",
        "EVB1-0x0102": "isolation_fault",
    }
    assert settings.targets.sns is None and settings.targets.webhook is None


def test_bad_rules_are_reported_by_entry_and_key(tmp_path: Path) -> None:
    toml = """
[[notifications.rules]]
code = "hot"
metric = "cell_temp_max_c"
op = "=>"
threshold = 60
severity = "critical"
"""
    assert problems(tmp_path, toml) == [
        "notifications.rules: rules[0].op: one of >=, >, <=, <, ==, !=, not '=>'"
    ]


def test_check_config_prints_rule_errors_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        "[[notifications.rules]]\ncode = 'cold'\nmetric = 'cell_temp_min_c'\nop = '<'\n"
        "threshold = 'zero'\nseverity = 'warning'\n"
        "[[notifications.teltonika_events]]\nio_id = 252\ncode = 'unplug'\n"
        "[[notifications.teltonika_events]]\nio_id = 252\ncode = 'again'\n"
    )
    assert cli.main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "gateway check-config: notifications.rules: rules[0].threshold: "
        "a finite number, not 'zero'",
        "gateway check-config: notifications.teltonika_events: io_id 252 is configured twice",
    ]


def test_the_webhook_secret_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "[notifications.targets.webhook]\nurl = 'https://ops.example.com/hook'\n"
    monkeypatch.setenv("GATEWAY_NOTIFICATIONS__TARGETS__WEBHOOK__SECRET", SECRET)
    path = tmp_path / "g.toml"
    path.write_text(url)
    webhook = load_settings(path).notifications.targets.webhook
    assert webhook is not None and webhook.key == SECRET.encode()
    assert SECRET not in repr(webhook) and SECRET not in str(load_settings(path))
    monkeypatch.delenv("GATEWAY_NOTIFICATIONS__TARGETS__WEBHOOK__SECRET")
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    path.write_text(url + f"secret_file = '{secret_file}'\n")
    webhook = load_settings(path).notifications.targets.webhook
    assert webhook is not None and webhook.key == SECRET.encode()


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("", "give secret (or its GATEWAY_… variable) or secret_file, one of them"),
        ("secret = 'short-one'\n", "the webhook secret needs at least 16 characters"),
        ("secret_file = '/nonexistent/secret'\n", "secret_file /nonexistent/secret: No such"),
        (f"secret = '{SECRET}'\nheaders = {{ X-Signature = 'x' }}\n", "X-Signature is set by"),
    ],
)
def test_webhook_mistakes_are_named_and_the_secret_never_echoed(
    tmp_path: Path, extra: str, problem: str
) -> None:
    url = "[notifications.targets.webhook]\nurl = 'https://ops.example.com/hook'\n"
    [line] = problems(tmp_path, url + extra)
    assert line.startswith("notifications.targets.webhook") and problem in line
    assert "short-one" not in line


def test_an_sns_target_needs_a_topic_arn(tmp_path: Path) -> None:
    [line] = problems(tmp_path, "[notifications.targets.sns]\ntopic_arn = 'faults'\n")
    assert line == "notifications.targets.sns.topic_arn: not an SNS topic ARN: 'faults'"
