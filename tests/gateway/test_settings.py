"""Settings: file, environment and flags; check-config reports every error with its path."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gateway.settings import ConfigError, load_settings, parse_listen
from tests.gateway.gatewayproc import GATEWAY

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_is_valid_and_documented() -> None:
    settings = load_settings(ROOT / "config" / "local.toml")
    assert [ls.codec for ls in settings.listeners] == ["teltonika", "gt06", "ais140", "evb1"]
    assert [ls.port for ls in settings.listeners] == [5027, 5023, 5024, 5100]
    assert all(ls.ack_policy == "journaled" for ls in settings.listeners)
    assert settings.journal.retain_s is None  # local-only: the segments are the output


def test_precedence_flags_over_environment_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "g.toml"
    path.write_text(
        "[pipeline]\nhigh_water_bytes = 1000000\nlow_water_bytes = 1000\n"
        "[sink.local]\ndata_dir = 'file'\n"
    )
    assert load_settings(path).pipeline.high_water_bytes == 1_000_000
    monkeypatch.setenv("GATEWAY_PIPELINE__HIGH_WATER_BYTES", "2000000")
    monkeypatch.setenv("GATEWAY_SINK__LOCAL__DATA_DIR", "env")
    settings = load_settings(path)
    assert settings.pipeline.high_water_bytes == 2_000_000
    assert settings.sink.local.data_dir == Path("env")
    flags = load_settings(path, {"sink": {"local": {"data_dir": "flag"}}})
    assert flags.sink.local.data_dir == Path("flag")
    assert flags.pipeline.high_water_bytes == 2_000_000  # nested sections merge


def test_every_error_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        "[[listeners]]\ncodec = 'evb1'\nport = 70000\nack_policy = 'sometimes'\n"
        "timezone = 'Mars/Base'\n"
        "[pipeline]\nhigh_water_bytes = 100000\nlow_water_bytes = 200000\n[metrics]\nbogus = 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    text = "\n".join(info.value.problems)
    expected = (
        "listeners.0.port",
        "listeners.0.ack_policy",
        "listeners.0.timezone",
        "pipeline: low_water_bytes must be below",
        "metrics.bogus: unknown setting",
    )
    for where in expected:
        assert where in text, text


def test_listen_flag_parsing() -> None:
    ls = parse_listen("gt06=127.0.0.1:5023")
    assert (ls.codec, ls.host, ls.port) == ("gt06", "127.0.0.1", 5023)
    for bad in ("gt06", "gt06=host", "=1.2.3.4:5", "gt06=h:99999"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GATEWAY, *args], capture_output=True, text=True, timeout=60, check=False)


def test_check_config_cli(tmp_path: Path) -> None:
    ok = run_cli("check-config", str(ROOT / "config" / "local.toml"))
    assert ok.returncode == 0 and "ok (4 listeners)" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[[listeners]]\ncodec = 'nope'\nport = 1\n")
    result = run_cli("check-config", str(bad))
    assert result.returncode != 0
    assert "listeners.0.codec: unknown codec 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[pipeline\n")
    result = run_cli("check-config", str(broken))
    assert result.returncode != 0 and "not valid TOML" in result.stderr


def test_run_refuses_bad_flags_without_a_traceback(tmp_path: Path) -> None:
    result = run_cli("run", "--listen", "evb1", "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "expected CODEC=HOST:PORT" in result.stderr
    result = run_cli(
        "run",
        "--listen",
        "nope=127.0.0.1:0",
        "--data-dir",
        str(tmp_path),
        "--metrics",
        "127.0.0.1:0",
    )
    assert result.returncode == 2 and "unknown codec 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("count", "message"), [("0", "must be 1 or more, not 0"), ("-2", "must be 1 or more, not -2"),
                           ("x", "not a number: 'x'")]
)  # fmt: skip
def test_a_worker_count_below_one_is_refused(tmp_path: Path, count: str, message: str) -> None:
    # --workers 0 used to run a single process without a word.
    result = run_cli("run", "--workers", count, "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert f"argument --workers: {message}" in result.stderr
    assert not (tmp_path / "raw").exists()


def test_a_malformed_json_environment_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "GATEWAY_LISTENERS": '[{"codec":'}
    result = subprocess.run(
        [GATEWAY, "run", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "gateway run: GATEWAY_LISTENERS: not valid JSON: Expecting value: line 1 column 11 "
        "(char 10)\n"
    )
    env = {**os.environ, "GATEWAY_SINK__LOCAL": "{x"}
    result = subprocess.run(
        [GATEWAY, "check-config", str(ROOT / "config" / "local.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("gateway check-config: GATEWAY_SINK__LOCAL: not valid JSON")
    assert result.stderr.count("\n") == 1


def test_check_config_skip_files_lists_the_files_instead_of_refusing_them() -> None:
    example = str(ROOT / "config" / "bridge-example.toml")
    strict = run_cli("check-config", example)
    assert strict.returncode == 2
    assert "azure-client.pem: no such file" in strict.stderr
    lenient = run_cli("check-config", "--skip-files", example)
    assert lenient.returncode == 0, lenient.stderr
    listed = [
        line.split(": ")[1]
        for line in lenient.stdout.splitlines()
        if line.endswith("missing here, needed where these settings run")
    ]
    assert [Path(p).name for p in listed] == [
        "azure-client.pem", "azure-client.key", "AmazonRootCA1.pem", "aws-client.pem",
        "aws-client.key",
    ]  # fmt: skip
    assert "bridge ok (1 sources, 2 routes, 1 destinations)" in lenient.stdout


def test_skip_files_still_reports_every_other_error(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    text = (ROOT / "config" / "bridge-example.toml").read_text(encoding="utf-8")
    path.write_text(text.replace("keepalive_s = 60", "keepalive_s = 1", 1))
    assert "keepalive_s = 1" in path.read_text()
    result = run_cli("check-config", "--skip-files", str(path))
    assert result.returncode == 2
    assert "keepalive_s: Input should be greater than or equal to 5" in result.stderr
    assert "no such file" not in result.stderr


@pytest.mark.parametrize(
    ("codec", "variant", "problem"),
    [
        ("gt06", "voltage_heartbeat", None),
        ("ais140", "sum16", None),
        ("gt06", "sum16", "unknown variant 'sum16' for codec gt06"),
        ("evb1", "imei_location", "unknown variant 'imei_location' for codec evb1: standard"),
    ],
)
def test_listener_variant_is_checked_against_its_codec(
    tmp_path: Path, codec: str, variant: str, problem: str | None
) -> None:
    path = tmp_path / "variant.toml"
    path.write_text(f"[[listeners]]\ncodec = '{codec}'\nport = 0\nvariant = '{variant}'\n")
    if problem is None:
        assert load_settings(path).listeners[0].variant == variant
        return
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert any(problem in p for p in info.value.problems), info.value.problems
