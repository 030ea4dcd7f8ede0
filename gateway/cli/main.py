"""The ``gateway`` console script: every mode is a subcommand.

User errors (bad hex, unknown codec, unreadable file, a port in use) print one line on stderr and
exit 2; a traceback is never a user's answer. Other statuses follow sysexits(3): 69 nothing
accepted the simulator's connections, 74 the data directory or sink cannot be written, 75 (parse)
try again later.

A command's code is imported only when that command runs: aiobotocore, aiohttp and pydantic
took 0.6 s to import, which ``gateway --help``, ``decode`` and ``codecs`` never use.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.pipeline.registry import CodecRegistry

EXIT_USAGE = 2
EXIT_IO = 74  # sysexits' EX_IOERR

# Commands whose arguments and code live in their own module, as ``add_arguments(parser)`` and
# ``run(args) -> int``: name -> (module, the line `gateway --help` shows without importing it).
MODULE_COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": (
        "gateway.fleet.command",
        "run a simulated device fleet against a gateway and print a JSON summary",
    ),
    "passwd": (
        "gateway.transport.mqtt.passwords",
        "set or delete an MQTT device's password in a password file (like mosquitto_passwd)",
    ),
    "kinesis": ("gateway.history.kinesis_tail", "Kinesis tools"),
    "replay": (
        "gateway.history.replay",
        "re-parse raw records (archives, captures) like live ingest",
    ),
    "parse": (
        "gateway.history.consumer",
        "consume the raw Kinesis stream and produce parsed records",
    ),
    "lake": (
        "gateway.lake.command",
        "compact a day of records into Parquet, aggregate it per vehicle, print the Athena DDL",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; of the module commands only ``command``'s arguments are loaded."""
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("decode", help="decode device bytes with one codec and print JSON lines")
    p.add_argument("--codec", required=True, help="codec name (see `gateway codecs`)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hex", help="the bytes as hex (whitespace allowed)")
    src.add_argument("--file", help="a capture file (binary, or hex text)")
    src.add_argument("stdin", nargs="?", choices=["-"], help="read the bytes from stdin")
    p.add_argument(
        "--format",
        choices=["auto", "hex", "binary"],
        default="auto",
        help="how to read --file/stdin (auto: hex text if it is only hex digits)",
    )
    p.add_argument(
        "--lines",
        action="store_true",
        help="each line of --file/stdin is one hex capture with a session of its own (a corpus "
        "in one process); events carry their line number",
    )
    p.add_argument(
        "--layout-dir",
        action="append",
        type=Path,
        metavar="DIR",
        help="extra directory of codec layout files (repeatable)",
    )

    p = sub.add_parser("run", help="run the gateway (listeners, pipeline, sinks, metrics)")
    _service_flags(p, config_required=False)
    p.add_argument(
        "--listen",
        action="append",
        metavar="CODEC=HOST:PORT",
        help="a listener (repeatable; replaces the configured listeners); mqtt=HOST:PORT is an "
        "MQTT listener (plain, no auth, so loopback only; ev/{device_id}/telemetry -> evb1)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes sharing the ports (SO_REUSEPORT); metrics on port + worker index",
    )

    p = sub.add_parser(
        "bridge",
        help="run the MQTT bridge of the [bridge] section (pipeline and sinks, no device ports)",
    )
    _service_flags(p, config_required=True)
    p.set_defaults(listen=None)

    for name, (module, help_line) in MODULE_COMMANDS.items():
        p = sub.add_parser(name, help=help_line)
        if name == command:
            importlib.import_module(module).add_arguments(p)

    p = sub.add_parser("check-config", help="validate a settings file; print every error")
    p.add_argument("file", type=Path)
    p.add_argument(
        "--skip-files",
        action="store_true",
        help="list the certificate and password files it names that are missing here instead "
        "of refusing them (an example, or settings for another host)",
    )

    p = sub.add_parser("codecs", help="list the available codecs and any that failed to load")
    p.add_argument("--layout-dir", action="append", type=Path, metavar="DIR")

    p = sub.add_parser("schema", help="write or check the JSON Schemas of the records")
    p.add_argument("--write", type=Path, metavar="DIR", help="write the schema files into DIR")
    p.add_argument("--check", type=Path, metavar="DIR", help="exit 1 if DIR's files are stale")
    return parser


def _service_flags(p: argparse.ArgumentParser, *, config_required: bool) -> None:
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


def bridge_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``gateway bridge``: the ``run`` flags' settings, and no device listeners."""
    return {**run_overrides(args), "listeners": [], "mqtt_listeners": []}


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


def without_workers_flag(argv: Sequence[str] | None) -> list[str]:
    """The ``run`` arguments for one worker: everything but ``--workers N``."""
    args = list(sys.argv[1:] if argv is None else argv)[1:]  # drop the "run" itself
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def check_config(path: Path, *, skip_files: bool = False) -> int:
    """Validate ``path`` like ``gateway run`` would, codec names included; with ``skip_files``
    the files it names need not exist here (they are listed)."""
    from gateway.bridge.settings import unknown_codecs  # noqa: PLC0415
    from gateway.common.settings_base import MISSING_FILES  # noqa: PLC0415
    from gateway.pipeline.registry import CodecRegistry, default_layout_dirs  # noqa: PLC0415
    from gateway.pipeline.settings import json_codec_factories  # noqa: PLC0415
    from gateway.settings import ConfigError, load_settings  # noqa: PLC0415

    missing: list[Path] = []
    token = MISSING_FILES.set(missing if skip_files else None)
    try:
        settings = load_settings(path)
    finally:
        MISSING_FILES.reset(token)
    registry = CodecRegistry.load(
        [*default_layout_dirs(), *settings.layout_dirs],
        configured=json_codec_factories(settings.json_codecs),
    )
    problems = [
        f"listeners.{i}.codec: unknown codec {ls.codec!r}; known: {', '.join(registry.names())}"
        for i, ls in enumerate(settings.listeners)
        if ls.codec not in registry.names()
    ]
    problems += [
        f"mqtt_listeners.{i}.routes.{j}.codec: unknown codec {route.codec!r}"
        for i, ms in enumerate(settings.mqtt_listeners)
        for j, route in enumerate(ms.routes)
        if route.codec not in registry.names()
    ]
    if settings.bridge is not None:
        problems += unknown_codecs(settings.bridge, registry.names())
    if problems:
        raise ConfigError(problems)
    print(f"{path}: ok ({len(settings.listeners)} listeners)")
    if settings.bridge is not None:
        b = settings.bridge
        print(
            f"{path}: bridge ok ({len(b.sources)} sources, {len(b.routes)} routes, "
            f"{len(b.destinations)} destinations)"
        )
    for file in dict.fromkeys(missing):  # each once, in the order named
        print(f"{path}: {file}: missing here, needed where these settings run")
    return 0


def _registry(extra: list[Path] | None) -> CodecRegistry:
    from gateway.pipeline.registry import CodecRegistry, default_layout_dirs  # noqa: PLC0415

    return CodecRegistry.load([*default_layout_dirs(), *(extra or [])])


def _decode(args: argparse.Namespace) -> int:
    from gateway.cli import decode  # noqa: PLC0415

    codec = _registry(args.layout_dir).create(args.codec)
    if args.lines:
        if args.hex is not None:
            raise decode.InputError("--lines reads --file or stdin, not --hex")
        return decode.run_lines(codec, *decode.read_lines(args.file, sys.stdin.buffer))
    data = decode.read_input(args.hex, args.file, sys.stdin.buffer, args.format)
    decode.run(codec, data)
    return 0


def _codecs(args: argparse.Namespace) -> int:
    registry = _registry(args.layout_dir)
    problems = registry.problems()
    for name in registry.names():
        print(name if name not in problems else f"{name}  (unusable: {problems[name]})")
    return 0


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from gateway.ops import logs, server, workers  # noqa: PLC0415
    from gateway.settings import ConfigError, load_settings  # noqa: PLC0415

    settings = load_settings(args.config, run_overrides(args))
    logs.configure(settings.log)  # the supervisor of --workers logs too (workers it restarts)
    if args.workers > 1:
        shared = [ls for ls in settings.listeners if ls.port == 0]
        if shared:
            raise ConfigError(["--workers needs fixed listener ports (port 0 differs per process)"])
        return workers.supervise(without_workers_flag(argv), args.workers)
    return server.run(settings, lambda: load_settings(args.config, run_overrides(args)))


def _bridge(args: argparse.Namespace) -> int:
    from gateway.ops import logs, server  # noqa: PLC0415
    from gateway.settings import ConfigError, load_settings  # noqa: PLC0415

    settings = load_settings(args.config, bridge_overrides(args))
    if settings.bridge is None:
        raise ConfigError([f"{args.config}: no [bridge] section"])
    logs.configure(settings.log)
    return server.run(settings, lambda: load_settings(args.config, bridge_overrides(args)))


def _schema(args: argparse.Namespace) -> int:
    from gateway.cli import schema  # noqa: PLC0415

    try:
        return schema.command(args.write, args.check)
    except OSError as exc:  # `--write /proc/x`, an unreadable --check directory
        print(f"gateway schema: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_IO


def _dispatch(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    if args.command in MODULE_COMMANDS:
        status: int = importlib.import_module(MODULE_COMMANDS[args.command][0]).run(args)
        return status
    if args.command == "run":
        return _run(args, argv)
    if args.command == "bridge":
        return _bridge(args)
    if args.command == "check-config":
        return check_config(args.file, skip_files=args.skip_files)
    return {"decode": _decode, "codecs": _codecs, "schema": _schema}[args.command](args)


def _user_error(command: str, exc: Exception) -> int | None:
    """Print ``exc`` as the user's mistake and return the exit status; None if it is a bug.

    The error types are imported here, not at the top: whatever raised one has loaded its module
    already, and a command that raised none never pays for pydantic.
    """
    from gateway.cli.decode import InputError  # noqa: PLC0415
    from gateway.common.settings_base import ConfigError  # noqa: PLC0415
    from gateway.pipeline.registry import UnknownCodecError  # noqa: PLC0415
    from gateway.sinks.base import SinkError  # noqa: PLC0415

    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            print(f"gateway {command}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, UnknownCodecError | InputError):
        print(f"gateway {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, SinkError):  # the data directory or the sink cannot be written at all
        print(f"gateway {command}: {exc}", file=sys.stderr)
        return EXIT_IO
    return None


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: its first word (the top level takes only ``-h``)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command_in(words)).parse_args(words)
    try:
        return _dispatch(args, argv)
    except BrokenPipeError:  # `gateway decode ... | head` is fine
        return 0
    except Exception as exc:
        status = _user_error(args.command, exc)
        if status is None:
            raise
        return status


if __name__ == "__main__":
    sys.exit(main())
