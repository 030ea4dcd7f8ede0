"""``gateway run``: the gateway itself (listeners, pipeline, sinks, metrics), and the flags the
long-running modes share (``run``, ``bridge``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    service_flags(p, config_required=False)
    p.add_argument(
        "--listen",
        action="append",
        metavar="CODEC=HOST:PORT",
        help="a listener (repeatable; replaces the configured listeners); mqtt=HOST:PORT is an "
        "MQTT listener (plain, no auth, so loopback only; ev/{device_id}/telemetry -> evb1)",
    )
    p.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        metavar="N",
        help="N processes sharing the ports (SO_REUSEPORT); metrics on port + worker index",
    )


def _worker_count(text: str) -> int:
    # 0 or a negative count used to run one process without a word: say it is not a count.
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {count}")
    return count


def service_flags(p: argparse.ArgumentParser, *, config_required: bool) -> None:
    """The flags of the long-running modes (``run``, ``bridge``)."""
    p.add_argument(
        "--config", type=Path, required=config_required, metavar="FILE", help="TOML settings file"
    )
    p.add_argument("--data-dir", type=Path, metavar="DIR", help="local sink data directory")
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="Prometheus endpoint address (default 127.0.0.1:9108; port 0: any free port)",
    )
    p.add_argument(
        "--health",
        metavar="HOST:PORT",
        help="/healthz and /readyz address (default 127.0.0.1:8080; port 0: any free port)",
    )


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given by ``gateway run`` flags (they beat the file and the environment)."""
    from gateway.settings import parse_address, parse_listen  # noqa: PLC0415
    from gateway.transport.mqtt.settings import LISTEN_PREFIX, parse_mqtt_listen  # noqa: PLC0415

    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["sink"] = {"local": {"data_dir": args.data_dir}}
    if args.listen:
        tcp = [spec for spec in args.listen if not spec.startswith(LISTEN_PREFIX)]
        mqtt = [spec for spec in args.listen if spec.startswith(LISTEN_PREFIX)]
        overrides["listeners"] = [parse_listen(spec).model_dump() for spec in tcp]
        overrides["mqtt_listeners"] = [parse_mqtt_listen(spec).model_dump() for spec in mqtt]
    if args.metrics is not None:
        host, port = parse_address(args.metrics, "--metrics")
        overrides["metrics"] = {"host": host, "port": port}
    if args.health is not None:
        host, port = parse_address(args.health, "--health")
        overrides["health"] = {"host": host, "port": port}
    return overrides


def without_workers_flag(argv: Sequence[str]) -> list[str]:
    """The ``run`` arguments for one worker: everything but ``--workers N``."""
    out, skip = [], False
    for arg in list(argv)[1:]:  # drop the "run" itself
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def run(args: argparse.Namespace) -> int:
    from gateway.ops import logs, server, workers  # noqa: PLC0415
    from gateway.settings import ConfigError, load_settings  # noqa: PLC0415

    settings = load_settings(args.config, run_overrides(args))
    logs.configure(settings.log)  # the supervisor of --workers logs too (workers it restarts)
    if args.workers > 1:
        shared = [ls for ls in settings.listeners if ls.port == 0]
        if shared:
            raise ConfigError(["--workers needs fixed listener ports (port 0 differs per process)"])
        return workers.supervise(without_workers_flag(args.argv), args.workers)
    return server.run(settings, lambda: load_settings(args.config, run_overrides(args)))
