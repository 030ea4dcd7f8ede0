"""``gateway simulate``: a simulated EV fleet that logs in, drives and reports to a gateway.

Prints exactly one JSON line on stdout at the end (progress goes to stderr, on a TTY only).
Bad arguments: one line on stderr and exit status 2. SIGINT/SIGTERM end the run early (a second
one also skips the drain); the summary is printed all the same.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import json
import math
import secrets
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import cast

from gateway.cli.status import EXIT_USAGE
from gateway.fleet.simulator import (
    CODECS,
    DEFAULT_IMEI_BASE,
    IMEI_DIGITS,
    MQTT_UNITS,
    TRANSPORTS,
    FleetConfig,
    FrameLog,
    simulate,
)
from gateway.fleet.unit import UnitSettings

EXIT_UNAVAILABLE = 69  # sysexits' EX_UNAVAILABLE: nothing accepted the fleet's connections
_MAX_PORT = 65535


class UsageError(ValueError):
    """A bad argument; the message is one line for the user."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``simulate`` arguments (the command itself is registered by ``gateway.cli.main``).
    Values are checked by :func:`run` (one-line errors)."""
    p.description = __doc__.splitlines()[0] if __doc__ else None
    p.add_argument(
        "--target",
        action="append",
        metavar="[CODEC=]HOST:PORT",
        help="where devices connect; one HOST:PORT for every codec, or CODEC=HOST:PORT "
        "(repeatable; a CODEC= target overrides the plain one for that codec)",
    )
    p.add_argument(
        "--codec",
        default="evb1",
        help=f"device protocol, or a comma list assigned round-robin ({', '.join(CODECS)}; "
        "default evb1)",
    )
    p.add_argument(
        "--transport",
        default="tcp",
        help="tcp (the codecs' own streams) or mqtt (evb1 frames as QoS 1 PUBLISHes to "
        "ev/{device_id}/telemetry on an MQTT listener)",
    )
    p.add_argument("--devices", default="10", metavar="N", help="fleet size (default 10)")
    p.add_argument(
        "--rate", default="1", metavar="HZ", help="telemetry frames per device per second (1)"
    )
    p.add_argument(
        "--duration", default="10", metavar="S", help="seconds to run; 0 runs until Ctrl-C (10)"
    )
    p.add_argument(
        "--faults",
        default="0",
        metavar="RATE",
        help="fault episodes (battery over-temperature, isolation) per device per minute (0)",
    )
    p.add_argument(
        "--ack-timeout",
        default="10",
        metavar="S",
        help="resend a frame after S seconds without its ACK (10, as the EVB1 spec says)",
    )
    p.add_argument(
        "--drain",
        metavar="S",
        help="after the run, wait at most S seconds for outstanding ACKs (ack timeout + 1)",
    )
    p.add_argument("--seed", metavar="N", help="seed for a reproducible fleet (default: random)")
    p.add_argument(
        "--imei-base",
        default=str(DEFAULT_IMEI_BASE),
        metavar="N",
        help="device ids are N, N+1, ... (15 digits); give simulators distinct ranges",
    )
    p.add_argument(
        "--connect-rate",
        metavar="PER_S",
        help="connects per second (default: the whole fleet over about a second, jittered)",
    )
    p.add_argument(
        "--acked-log",
        type=Path,
        metavar="PATH",
        help='append {"codec", "device_id", "payload": hex} for every frame ACKed',
    )
    p.add_argument(
        "--sent-log", type=Path, metavar="PATH", help="the same for every frame first written"
    )
    p.add_argument(
        "--history",
        metavar="DAYS",
        help="no gateway and no waiting: write DAYS of the fleet's records into --data-dir as "
        "live ingest would (raw/, parsed/, notifications/) on a simulated clock, and the "
        "simulator's ground truth per vehicle and day in truth.jsonl (gateway.fleet.history)",
    )
    p.add_argument("--data-dir", type=Path, metavar="DIR", help="where --history writes")
    p.add_argument(
        "--start",
        metavar="YYYY-MM-DD",
        help="--history's first UTC day (default: DAYS days before today)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``gateway simulate``; returns the exit status."""
    if args.history is not None:
        try:
            summary = history(args)
        except UsageError as exc:
            print(f"gateway simulate: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(json.dumps(summary), flush=True)
        return 0
    try:
        config = config_from_args(args, progress=sys.stderr.isatty())
    except UsageError as exc:
        print(f"gateway simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logs: list[FrameLog] = []
    try:
        sent_log = _open_log(args.sent_log, "--sent-log", logs)
        acked_log = _open_log(args.acked_log, "--acked-log", logs)
        result = simulate(config, sent_log=sent_log, acked_log=acked_log)
    except UsageError as exc:
        print(f"gateway simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        for log in logs:
            log.close()
    with contextlib.suppress(BrokenPipeError):  # `gateway simulate ... | head` is fine
        print(json.dumps(result), flush=True)
    unreachable = cast(list[str], result["unreachable"])
    for codec in unreachable:
        host, port = config.targets[codec]
        print(
            f"gateway simulate: nothing accepted {codec} connections on {host}:{port}",
            file=sys.stderr,
        )
    return EXIT_UNAVAILABLE if unreachable else 0


def history(args: argparse.Namespace) -> dict[str, object]:
    """``--history DAYS``: the fleet's days written at once; a JSON summary."""
    # Imported here: the live fleet needs neither the codecs nor the rule engine.
    from gateway.fleet.history import FleetHistory, HistoryConfig  # noqa: PLC0415
    from gateway.notify.settings import NotificationSettings  # noqa: PLC0415
    from gateway.pipeline.registry import CodecRegistry, default_layout_dirs  # noqa: PLC0415

    days = _int(args.history, "--history", low=1)
    if args.data_dir is None:
        raise UsageError("--history needs --data-dir DIR")
    codecs = tuple(c.strip() for c in str(args.codec).split(","))
    unknown = [c for c in codecs if c not in CODECS]
    if unknown:
        raise UsageError(f"unknown codec {unknown[0]!r}; the simulator speaks {', '.join(CODECS)}")
    today = datetime.now(UTC).date()
    try:
        start = (
            today - timedelta(days=days) if args.start is None else date.fromisoformat(args.start)
        )
    except ValueError:
        raise UsageError(f"--start {args.start!r}: expected YYYY-MM-DD") from None
    config = HistoryConfig(
        devices=_int(args.devices, "--devices", low=1),
        start=calendar.timegm(start.timetuple()),
        days=days,
        codecs=codecs,
        frame_s=1.0 / _float(args.rate, "--rate", low=1e-6),
        faults_per_min=_float(args.faults, "--faults", low=0.0),
        seed=0 if args.seed is None else _int(args.seed, "--seed", low=0),
        imei_base=_int(args.imei_base, "--imei-base", low=0),
    )
    registry = CodecRegistry.load(default_layout_dirs())
    writer = FleetHistory(config, registry.create, NotificationSettings().engine())
    began = time.monotonic()
    try:
        writer.run(args.data_dir)
    except OSError as exc:
        raise UsageError(f"--data-dir {args.data_dir}: {exc.strerror or exc}") from None
    return {
        "devices": config.devices,
        "days": days,
        "start": start.isoformat(),
        "records": writer.records,
        "truth": str(args.data_dir / "truth.jsonl"),
        "seconds": round(time.monotonic() - began, 3),
    }


def config_from_args(args: argparse.Namespace, *, progress: bool = False) -> FleetConfig:
    """The fleet the arguments describe; raises :class:`UsageError` with a one-line message."""
    codecs = tuple(c.strip() for c in str(args.codec).split(","))
    for codec in codecs:
        if codec not in CODECS:
            raise UsageError(f"unknown codec {codec!r}; the simulator speaks {', '.join(CODECS)}")
    if args.transport not in TRANSPORTS:
        raise UsageError(f"--transport {args.transport!r}: expected {' or '.join(TRANSPORTS)}")
    if args.transport == "mqtt":
        for codec in codecs:
            if codec not in MQTT_UNITS:
                raise UsageError(
                    f"codec {codec!r} has no MQTT unit; over MQTT: {', '.join(MQTT_UNITS)}"
                )
    devices = _int(args.devices, "--devices", low=1)
    imei_base = _int(args.imei_base, "--imei-base", low=0)
    if imei_base + devices > 10**IMEI_DIGITS:
        raise UsageError(f"--imei-base {imei_base} + {devices} devices exceeds 15 digits")
    ack_timeout_s = _float(args.ack_timeout, "--ack-timeout", low=0.001)
    drain = args.drain
    connect_rate = args.connect_rate
    return FleetConfig(
        codecs=codecs,
        targets=parse_targets(args.target or [], codecs),
        devices=devices,
        rate_hz=_float(args.rate, "--rate", low=1e-6),
        duration_s=_float(args.duration, "--duration", low=0.0),
        faults_per_min=_float(args.faults, "--faults", low=0.0),
        seed=secrets.randbelow(2**31) if args.seed is None else _int(args.seed, "--seed", low=0),
        imei_base=imei_base,
        connect_rate=None
        if connect_rate is None
        else _float(connect_rate, "--connect-rate", low=1e-6),
        drain_s=ack_timeout_s + 1 if drain is None else _float(drain, "--drain", low=0.0),
        progress=progress,
        transport=args.transport,
        unit=UnitSettings(ack_timeout_s=ack_timeout_s),
    )


def parse_targets(values: list[str], codecs: tuple[str, ...]) -> dict[str, tuple[str, int]]:
    """``HOST:PORT`` for all codecs and/or ``CODEC=HOST:PORT``; every codec needs one."""
    default: tuple[str, int] | None = None
    specific: dict[str, tuple[str, int]] = {}
    for value in values:
        codec, sep, address = value.rpartition("=")
        if not sep:
            default = _address(value)
            continue
        if codec not in CODECS:
            raise UsageError(f"--target {value!r}: unknown codec {codec!r}")
        # A target for a codec this run does not simulate is allowed (one script, many mixes).
        specific[codec] = _address(address)
    targets: dict[str, tuple[str, int]] = {}
    for codec in codecs:
        target = specific.get(codec, default)
        if target is None:
            raise UsageError(f"no --target for codec {codec!r} (HOST:PORT or {codec}=HOST:PORT)")
        targets[codec] = target
    return targets


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):  # [::1]:5000
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= _MAX_PORT:
        raise UsageError(f"bad target {value!r}: expected HOST:PORT with a port 1-65535")
    return host, int(port)


def _int(value: object, flag: str, *, low: int | None = None) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not an integer") from None
    if low is not None and number < low:
        raise UsageError(f"{flag} must be at least {low}, not {number}")
    return number


def _float(value: object, flag: str, *, low: float) -> float:
    try:
        number = float(str(value))
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not a number") from None
    if not math.isfinite(number) or number < low:
        raise UsageError(f"{flag} must be a number of at least {low:g}, not {value}")
    return number


def _open_log(path: Path | None, flag: str, logs: list[FrameLog]) -> FrameLog | None:
    if path is None:
        return None
    try:
        log = FrameLog(path)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror or exc}") from None
    logs.append(log)
    return log
