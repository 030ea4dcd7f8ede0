"""The console script's registry and the flags of the long-running modes, without processes."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.bridge import bridge_overrides
from gateway.cli.main import COMMANDS, build_parser
from gateway.cli.run import run_overrides, without_workers_flag
from gateway.common.settings_base import ConfigError


def test_every_command_is_a_module_with_arguments_and_a_run_function() -> None:
    for module, _ in COMMANDS.values():
        command = importlib.import_module(module)
        assert module.startswith("gateway.cli."), module  # argument parsing lives in cli/
        assert callable(command.add_arguments) and callable(command.run), module


def test_a_worker_gets_the_run_arguments_without_the_workers_flag() -> None:
    argv = ["run", "--config", "c.toml", "--workers", "4", "--listen", "evb1=:5100"]
    assert without_workers_flag(argv) == ["--config", "c.toml", "--listen", "evb1=:5100"]
    assert without_workers_flag(["run", "--workers=2", "--data-dir", "d"]) == ["--data-dir", "d"]


def parse(*argv: str) -> dict[str, Any]:
    return run_overrides(build_parser(argv[0]).parse_args(argv))


def test_run_flags_become_settings_that_beat_the_file() -> None:
    overrides = parse(
        "run",
        "--data-dir",
        "d",
        "--listen",
        "evb1=127.0.0.1:5100",
        "--listen",
        "mqtt=127.0.0.1:1883",
        "--metrics",
        "127.0.0.1:0",
        "--health",
        "[::1]:8081",
    )
    assert overrides["sink"] == {"local": {"data_dir": Path("d")}}
    [tcp] = overrides["listeners"]
    assert (tcp["codec"], tcp["host"], tcp["port"]) == ("evb1", "127.0.0.1", 5100)
    [mqtt] = overrides["mqtt_listeners"]
    assert (mqtt["host"], mqtt["port"]) == ("127.0.0.1", 1883)
    assert overrides["metrics"] == {"host": "127.0.0.1", "port": 0}
    assert overrides["health"] == {"host": "::1", "port": 8081}


def test_no_flags_override_nothing() -> None:
    assert parse("run") == {}


def test_the_bridge_takes_the_run_flags_and_no_device_listeners() -> None:
    args = build_parser("bridge").parse_args(["bridge", "--config", "b.toml", "--data-dir", "d"])
    assert bridge_overrides(args) == {
        "sink": {"local": {"data_dir": Path("d")}},
        "listeners": [],
        "mqtt_listeners": [],
    }


def test_a_bad_address_is_a_config_error_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match="--metrics 'nowhere': expected HOST:PORT"):
        parse("run", "--metrics", "nowhere")
