"""``gateway bridge``: the MQTT bridge of the ``[bridge]`` section (pipeline and sinks, no device
ports), with the flags of ``gateway run``."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.run import run_overrides, service_flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    service_flags(p, config_required=True)
    p.set_defaults(listen=None)


def bridge_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``run`` flags' settings, and no device listeners."""
    return {**run_overrides(args), "listeners": [], "mqtt_listeners": []}


def run(args: argparse.Namespace) -> int:
    from gateway.ops import logs, server  # noqa: PLC0415
    from gateway.settings import ConfigError, load_settings  # noqa: PLC0415

    settings = load_settings(args.config, bridge_overrides(args))
    if settings.bridge is None:
        raise ConfigError([f"{args.config}: no [bridge] section"])
    logs.configure(settings.log)
    return server.run(settings, lambda: load_settings(args.config, bridge_overrides(args)))
